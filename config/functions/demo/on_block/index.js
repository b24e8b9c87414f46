// A Function Compute handler for Node.js returning a Promise: logs each Block event (number, hash and
// transaction count) and returns a summary object.
exports.handler = async (event, context) => {
  const block = JSON.parse(event.toString()).content;
  console.log(`block ${block.number} ${block.hash.slice(0, 16)}… with ${block.transactions.length} transaction(s)`);
  return { block: block.number, transactions: block.transactions.length };
};
