// A Function Compute handler for Node.js: the `taskmgr-txs` trigger's JMESPath filter pushes a small object per
// valid taskmgr transaction ({event_id, tx_id, creator, input}), `input` being the JSON text of the invocation
// arguments, e.g. ["createTask","task-3","{...}"].
exports.handler = (event, context, callback) => {
  const tx = JSON.parse(event.toString());
  const args = JSON.parse(tx.input);
  console.log(`tx ${tx.tx_id.slice(0, 12)}… ${args[0]}(${args[1]}) by ${tx.creator}`);
  callback(null, { tx_id: tx.tx_id, call: args[0] });
};
