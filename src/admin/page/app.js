// The chaintrigger status page. It polls the admin API's JSON routes with the token the operator typed (kept in
// this tab's sessionStorage, sent as `Authorization: Bearer`, never put in a URL) and renders every value as text:
// trigger names, errors and payloads come from the chain and from targets, and are hostile input. Nothing here
// parses a string as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "chaintrigger.admin-token";
  const POLL_MS = 1500;
  // How much history the plots keep, in the page only (a reload starts afresh).
  const HISTORY_MS = 10 * 60 * 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const DEAD_LETTER_PAGE = 50;

  let token = null;
  try {
    token = sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    token = null;
  }
  let pollTimer = null;
  let polling = false;
  const channelCards = new Map();
  const triggerCards = new Map();
  // name -> [{t, height, lag}], oldest first.
  const samples = new Map();
  const deadLetters = { trigger: null, nextAfter: null };

  const $ = (id) => document.getElementById(id);

  // Builds an element; strings and numbers among the children become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = value;
        else if (key === "data") Object.assign(node.dataset, value);
        else node[key] = value;
      }
    }
    for (const child of children) append(node, child);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined) return;
    if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }

  function setText(node, value) {
    node.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function when(at) {
    if (!at) return "";
    const date = new Date(at);
    if (Number.isNaN(date.getTime())) return String(at);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function ago(at) {
    const seconds = Math.round((Date.now() - new Date(at).getTime()) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function threshold(count, limit) {
    return limit < 0 ? `${count} / -1 (never fails)` : `${count} / ${limit}`;
  }

  // ---------------------------------------------------------------------------------------------------------
  // The API

  class Unauthorized extends Error {}

  // Calls the API with the token; resolves to {status, body}. A 401 forgets the token and asks again.
  async function api(method, path, body) {
    const init = {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let parsed = null;
    const text = await response.text();
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch (_) {
      parsed = text;
    }
    if (response.status === 401) {
      const message = parsed && parsed.error ? parsed.error.message : "the token was refused";
      askToken(`The admin API refused this token (${message}). Enter the right one.`);
      throw new Unauthorized(message);
    }
    return { status: response.status, body: parsed };
  }

  function errorMessage(result) {
    const error = result.body && result.body.error;
    if (error && typeof error.message === "string") return `${error.message} (HTTP ${result.status})`;
    return `HTTP ${result.status}: ${typeof result.body === "string" ? result.body : JSON.stringify(result.body)}`;
  }

  function notice(text, bad) {
    const node = $("notice");
    node.textContent = text;
    node.className = bad ? "notice bad" : "notice";
    node.hidden = false;
  }

  // ---------------------------------------------------------------------------------------------------------
  // The token

  function askToken(problem) {
    stopPolling();
    token = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* storage unavailable: the token lives in memory only */
    }
    $("main").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    const problemNode = $("login-problem");
    problemNode.textContent = problem || "";
    problemNode.hidden = !problem;
    const live = $("live");
    live.textContent = "not connected";
    live.className = "live";
    $("token").value = "";
    $("token").focus();
  }

  async function login(event) {
    event.preventDefault();
    const typed = $("token").value.trim();
    $("token").value = "";
    if (!typed) return;
    token = typed;
    $("login-submit").disabled = true;
    try {
      const result = await api("GET", "v1/channels");
      if (result.status !== 200) {
        askToken(`The admin API answered: ${errorMessage(result)}`);
        return;
      }
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (_) {
        /* kept in memory only */
      }
      showMain();
    } catch (error) {
      if (!(error instanceof Unauthorized)) askToken(`The admin API cannot be reached: ${error.message}`);
    } finally {
      $("login-submit").disabled = false;
    }
  }

  function showMain() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("forget").hidden = false;
    startPolling();
  }

  // ---------------------------------------------------------------------------------------------------------
  // Polling

  function startPolling() {
    stopPolling();
    poll();
  }

  function stopPolling() {
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function poll() {
    if (polling || token === null) return;
    polling = true;
    const live = $("live");
    try {
      const [channels, triggers] = await Promise.all([api("GET", "v1/channels"), api("GET", "v1/triggers")]);
      if (channels.status !== 200 || triggers.status !== 200) {
        throw new Error(errorMessage(channels.status !== 200 ? channels : triggers));
      }
      renderChannels(channels.body.channels || []);
      renderTriggers(triggers.body.triggers || []);
      live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      live.className = "live";
    } catch (error) {
      if (error instanceof Unauthorized) {
        polling = false;
        return;
      }
      live.textContent = `the admin API cannot be reached: ${error.message}`;
      live.className = "live down";
    }
    polling = false;
    if (token !== null) pollTimer = setTimeout(poll, POLL_MS);
  }

  function refreshSoon() {
    stopPolling();
    pollTimer = setTimeout(poll, 50);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Channels

  function stat(list, label, className) {
    const value = el("dd", { class: className });
    list.appendChild(el("div", null, el("dt", { text: label }), value));
    return value;
  }

  function errorBlock() {
    const at = el("div", { class: "when" });
    const message = el("pre", { class: "message" });
    const node = el("div", { class: "error" }, at, message);
    node.hidden = true;
    return { node, at, message };
  }

  function showError(block, error) {
    if (!error) {
      block.node.hidden = true;
      block.at.textContent = "";
      block.message.textContent = "";
      return;
    }
    block.node.hidden = false;
    block.at.textContent = `last error ${when(error.at)} (${ago(error.at)})`;
    block.message.textContent = error.message;
  }

  function channelCard(name) {
    const title = el("h3", { text: name });
    const badge = el("span", { class: "state" });
    const stats = el("dl", { class: "stats" });
    const card = el("article", { class: "card channel", data: { channel: name } }, el("div", { class: "card-head" }, title, badge), stats);
    const fields = {
      height: stat(stats, "chain height", "chain-height"),
      peer: stat(stats, "peer", "peer mono"),
      reconnects: stat(stats, "reconnects", "reconnects"),
      catchUp: stat(stats, "catch-up streams", "catch-up"),
    };
    const error = errorBlock();
    error.node.classList.add("channel-error");
    card.appendChild(error.node);
    const peers = el("table", { class: "peers" });
    card.appendChild(peers);
    return { card, badge, fields, error, peers };
  }

  function renderChannels(channels) {
    const list = $("channel-list");
    const seen = new Set();
    for (const channel of channels) {
      seen.add(channel.name);
      let view = channelCards.get(channel.name);
      if (!view) {
        view = channelCard(channel.name);
        channelCards.set(channel.name, view);
      }
      list.appendChild(view.card);
      view.badge.textContent = channel.connected ? "connected" : "disconnected";
      view.badge.className = `state ${channel.connected ? "connected" : "disconnected"}`;
      setText(view.fields.height, channel.chain_height);
      setText(view.fields.peer, channel.peer || "none");
      setText(view.fields.reconnects, channel.reconnects);
      const catchUp = channel.catch_up || {};
      setText(view.fields.catchUp, `${catchUp.open ?? 0} open, ${catchUp.waiting ?? 0} waiting, ${catchUp.limit ?? 0} allowed`);
      showError(view.error, channel.last_error);
      renderPeers(view.peers, channel.peers || []);
    }
    for (const [name, view] of channelCards) {
      if (!seen.has(name)) {
        view.card.remove();
        channelCards.delete(name);
      }
    }
    fillChannelChoice(channels.map((channel) => channel.name));
  }

  function renderPeers(table, peers) {
    clear(table);
    if (peers.length < 2) return;
    table.appendChild(el("tr", null, el("th", { text: "peer" }), el("th", { text: "height" }), el("th", { text: "state" }), el("th", { text: "last error" })));
    for (const peer of peers) {
      const state = peer.current ? "current" : peer.stale ? "stale" : "";
      const error = peer.last_error ? `${when(peer.last_error.at)} ${peer.last_error.message}` : "";
      table.appendChild(el("tr", null, el("td", { class: "mono", text: peer.address }), el("td", { text: peer.height ?? "–" }), el("td", { text: state }), el("td", { text: error })));
    }
  }

  function fillChannelChoice(names) {
    const select = $("filter-channel");
    const current = Array.from(select.options).map((option) => option.value);
    if (current.length === names.length && current.every((name, i) => name === names[i])) return;
    const chosen = select.value;
    clear(select);
    for (const name of names) select.appendChild(el("option", { value: name, text: name }));
    if (names.includes(chosen)) select.value = chosen;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Triggers

  function triggerCard(name) {
    const title = el("h3", { class: "name", text: name });
    const badge = el("span", { class: "state" });
    const sub = el("p", { class: "sub" });
    const stats = el("dl", { class: "stats" });
    const fields = {
      height: stat(stats, "block height / chain", "block-height"),
      lag: stat(stats, "lag (blocks)", "lag"),
      delivered: stat(stats, "delivered", "delivered"),
      discarded: stat(stats, "discarded", "discarded"),
      failures: stat(stats, "failures / threshold", "failures"),
      position: stat(stats, "next event (block.index)", "position"),
      retries: stat(stats, "retries", "retries"),
      enabled: stat(stats, "enabled over the API", "enabled-at"),
    };
    const error = errorBlock();
    error.node.classList.add("trigger-error");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 300 60");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `block height and lag of ${name} over the last minutes`);
    const heightLine = document.createElementNS(SVG, "polyline");
    heightLine.setAttribute("class", "height");
    const lagLine = document.createElementNS(SVG, "polyline");
    lagLine.setAttribute("class", "lag");
    svg.appendChild(heightLine);
    svg.appendChild(lagLine);
    const heightLegend = el("span", { class: "height" });
    const lagLegend = el("span", { class: "lag" });
    const span = el("span");
    const plot = el("div", { class: "plot" }, svg, el("div", { class: "legend" }, heightLegend, lagLegend, span));

    const enable = el("button", { type: "button", class: "enable", text: "Enable…" });
    const disable = el("button", { type: "button", class: "disable", text: "Disable" });
    const remove = el("button", { type: "button", class: "delete danger", text: "Delete" });
    const letters = el("button", { type: "button", class: "dead-letters", text: "Dead letters" });
    enable.addEventListener("click", () => enableTrigger(name));
    disable.addEventListener("click", () => disableTrigger(name));
    remove.addEventListener("click", () => deleteTrigger(name));
    letters.addEventListener("click", () => openDeadLetters(name));

    const card = el(
      "article",
      { class: "card trigger", data: { trigger: name } },
      el("div", { class: "card-head" }, title, badge),
      sub,
      stats,
      error.node,
      plot,
      el("div", { class: "actions" }, enable, disable, remove, letters),
    );
    return { card, badge, sub, fields, error, heightLine, lagLine, heightLegend, lagLegend, span, disable };
  }

  function renderTriggers(triggers) {
    const list = $("trigger-list");
    const seen = new Set();
    const now = Date.now();
    for (const trigger of triggers) {
      seen.add(trigger.name);
      let view = triggerCards.get(trigger.name);
      if (!view) {
        view = triggerCard(trigger.name);
        triggerCards.set(trigger.name, view);
      }
      list.appendChild(view.card);
      view.card.dataset.state = trigger.state;
      view.badge.textContent = trigger.state;
      view.badge.className = `state ${["Running", "Exception", "Failed", "Disabled"].includes(trigger.state) ? trigger.state : ""}`;
      view.sub.textContent = `${trigger.channel} · ${trigger.event_type} events → ${trigger.target}`;
      setText(view.fields.height, `${trigger.block_height ?? "–"} / ${trigger.chain_height ?? "–"}`);
      setText(view.fields.lag, trigger.lag);
      setText(view.fields.delivered, trigger.delivered);
      setText(view.fields.discarded, trigger.discarded);
      setText(view.fields.failures, threshold(trigger.failure_count, trigger.failure_threshold));
      view.fields.failures.className = trigger.failure_threshold >= 0 && trigger.failure_count > trigger.failure_threshold ? "failures over" : "failures";
      setText(view.fields.position, trigger.position ? `${trigger.position.block}.${trigger.position.event_index}` : null);
      setText(view.fields.retries, trigger.retries);
      setText(view.fields.enabled, trigger.enabled_at ? when(trigger.enabled_at) : "never");
      view.disable.disabled = trigger.state === "Disabled";
      showError(view.error, trigger.last_error);
      record(trigger, now);
      plot(view, samples.get(trigger.name), now);
    }
    for (const [name, view] of triggerCards) {
      if (!seen.has(name)) {
        view.card.remove();
        triggerCards.delete(name);
        samples.delete(name);
      }
    }
    $("no-triggers").hidden = triggers.length > 0;
  }

  function record(trigger, now) {
    let list = samples.get(trigger.name);
    if (!list) {
      list = [];
      samples.set(trigger.name, list);
    }
    list.push({ t: now, height: trigger.block_height, lag: trigger.lag });
    while (list.length && list[0].t < now - HISTORY_MS) list.shift();
  }

  // Draws block height (scaled between its lowest and highest value in the window) and lag (from 0 to its
  // highest) against time, over the polled samples.
  function plot(view, list, now) {
    const start = list.length ? list[0].t : now;
    const width = Math.max(now - start, 1);
    const x = (t) => (((t - start) / width) * 300).toFixed(1);
    const heights = list.filter((s) => typeof s.height === "number");
    const lags = list.filter((s) => typeof s.lag === "number");
    const low = Math.min(...heights.map((s) => s.height));
    const high = Math.max(...heights.map((s) => s.height));
    const lagHigh = Math.max(1, ...lags.map((s) => s.lag));
    const y = (value, min, max) => (56 - ((value - min) / Math.max(max - min, 1)) * 52).toFixed(1);
    view.heightLine.setAttribute("points", heights.map((s) => `${x(s.t)},${y(s.height, low, high)}`).join(" "));
    view.lagLine.setAttribute("points", lags.map((s) => `${x(s.t)},${y(s.lag, 0, lagHigh)}`).join(" "));
    view.heightLegend.textContent = heights.length ? `height ${low} → ${heights[heights.length - 1].height}` : "height –";
    view.lagLegend.textContent = lags.length ? `lag now ${lags[lags.length - 1].lag}, max ${Math.max(...lags.map((s) => s.lag))}` : "lag –";
    view.span.textContent = `last ${Math.max(1, Math.round((now - start) / 60000))} min`;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Confirmation

  // Shows the confirmation dialog; resolves with true when the operator confirms. `check` may refuse the
  // confirmation with a message (e.g. a missing block number).
  function confirmAction({ title, text, ok, danger, enableChoice, check }) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = ok;
    $("confirm-ok").className = danger ? "danger" : "primary";
    $("enable-from").hidden = !enableChoice;
    $("confirm-problem").hidden = true;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-ok").removeEventListener("click", onOk);
        $("confirm-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const onOk = () => {
        const problem = check ? check() : null;
        if (problem) {
          $("confirm-problem").textContent = problem;
          $("confirm-problem").hidden = false;
          return;
        }
        done(true);
      };
      const onCancel = (event) => {
        if (event) event.preventDefault();
        done(false);
      };
      $("confirm-ok").addEventListener("click", onOk);
      $("confirm-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
    });
  }

  async function command(method, path, body, success) {
    try {
      const result = await api(method, path, body);
      if (result.status === 200) notice(success(result.body), false);
      else notice(errorMessage(result), true);
      return result;
    } catch (error) {
      if (!(error instanceof Unauthorized)) notice(`The admin API cannot be reached: ${error.message}`, true);
      return null;
    } finally {
      refreshSoon();
    }
  }

  const triggerPath = (name) => `v1/triggers/${encodeURIComponent(name)}`;

  async function enableTrigger(name) {
    for (const radio of document.getElementsByName("enable-from")) radio.checked = radio.value === "latest";
    $("enable-block").value = "";
    const chosen = () => Array.from(document.getElementsByName("enable-from")).find((radio) => radio.checked).value;
    const confirmed = await confirmAction({
      title: `Enable ${name}?`,
      text: `The trigger ${name} starts pushing again, and its failure count is reset to 0.`,
      ok: "Enable",
      enableChoice: true,
      check: () => {
        if (chosen() !== "block") return null;
        return /^\d+$/.test($("enable-block").value.trim()) ? null : "Enter the block number to start from.";
      },
    });
    if (!confirmed) return;
    const from = chosen() === "block" ? Number($("enable-block").value.trim()) : chosen();
    await command("POST", `${triggerPath(name)}/enable`, { from }, (status) => `${name} enabled from ${from}: ${status.state}`);
  }

  async function disableTrigger(name) {
    const confirmed = await confirmAction({
      title: `Disable ${name}?`,
      text: `The trigger ${name} stops pushing. Events that happen while it is disabled are discarded; enabling it from the stored position pushes them after all.`,
      ok: "Disable",
      danger: true,
    });
    if (!confirmed) return;
    await command("POST", `${triggerPath(name)}/disable`, undefined, (status) => `${name} is ${status.state}`);
  }

  async function deleteTrigger(name) {
    const confirmed = await confirmAction({
      title: `Delete ${name}?`,
      text: `The trigger ${name} is removed for good: it stays deleted across restarts even while its entry remains in the configuration file.`,
      ok: "Delete",
      danger: true,
    });
    if (!confirmed) return;
    await command("DELETE", triggerPath(name), undefined, () => `${name} deleted`);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Dead letters

  async function openDeadLetters(name) {
    deadLetters.trigger = name;
    deadLetters.nextAfter = null;
    clear($("dead-letters-list"));
    $("dead-letters-title").textContent = `Dead letters of ${name}`;
    $("dead-letters").hidden = false;
    await loadDeadLetters();
    $("dead-letters").scrollIntoView({ block: "start" });
  }

  async function loadDeadLetters() {
    const name = deadLetters.trigger;
    let path = `${triggerPath(name)}/dead-letters?limit=${DEAD_LETTER_PAGE}`;
    if (deadLetters.nextAfter !== null) path += `&after=${encodeURIComponent(deadLetters.nextAfter)}`;
    let result;
    try {
      result = await api("GET", path);
    } catch (error) {
      if (!(error instanceof Unauthorized)) notice(`The admin API cannot be reached: ${error.message}`, true);
      return;
    }
    if (result.status !== 200) {
      notice(errorMessage(result), true);
      return;
    }
    const list = $("dead-letters-list");
    for (const letter of result.body.dead_letters || []) list.appendChild(deadLetterItem(name, letter));
    deadLetters.nextAfter = result.body.next_after ?? null;
    $("dead-letters-more").hidden = deadLetters.nextAfter === null;
    $("dead-letters-empty").hidden = list.childElementCount > 0;
  }

  function deadLetterItem(name, letter) {
    const state = el("span", { class: "repushed", text: letter.repushed ? "re-pushed" : "not re-pushed" });
    const outcome = el("p", { class: "outcome" });
    outcome.hidden = true;
    const button = el("button", { type: "button", class: "repush", text: "Re-push" });
    button.addEventListener("click", async () => {
      const confirmed = await confirmAction({
        title: `Re-push dead letter ${letter.id}?`,
        text: `Event ${letter.event_id} (block ${letter.block}) is pushed again to ${name}'s current target.`,
        ok: "Re-push",
      });
      if (!confirmed) return;
      button.disabled = true;
      const result = await command("POST", `${triggerPath(name)}/dead-letters/${encodeURIComponent(letter.id)}/repush`, undefined, (body) =>
        body.delivered ? `dead letter ${letter.id} delivered` : `dead letter ${letter.id} not delivered: ${body.error}`,
      );
      button.disabled = false;
      if (result && result.status === 200) {
        outcome.hidden = false;
        outcome.textContent = result.body.delivered ? "delivered" : `not delivered: ${result.body.error}`;
        outcome.className = result.body.delivered ? "outcome" : "outcome problem";
        if (result.body.delivered) state.textContent = "re-pushed";
      }
    });
    return el(
      "li",
      { data: { deadLetter: String(letter.id) } },
      el("div", { class: "card-head" }, el("h3", { class: "mono", text: `#${letter.id} ${letter.event_id}` }), state),
      el("p", { class: "sub", text: `block ${letter.block}, event ${letter.event_index}, output ${letter.output} · ${letter.attempts} attempt${letter.attempts === 1 ? "" : "s"} · ${when(letter.at)}` }),
      el("div", { class: "error" }, el("pre", { class: "message", text: letter.error })),
      el("details", null, el("summary", { text: "payload" }), el("pre", { class: "payload", text: JSON.stringify(letter.payload, null, 2) })),
      outcome,
      el("div", { class: "actions" }, button),
    );
  }

  async function repushAll() {
    const name = deadLetters.trigger;
    const confirmed = await confirmAction({
      title: `Re-push every dead letter of ${name}?`,
      text: `Every dead letter of ${name} not re-pushed yet is pushed again to its current target, oldest first.`,
      ok: "Re-push all",
    });
    if (!confirmed) return;
    const result = await command("POST", `${triggerPath(name)}/dead-letters/repush`, undefined, (body) => {
      const outcomes = body.outcomes || [];
      const delivered = outcomes.filter((outcome) => outcome.delivered).length;
      return `${delivered} of ${outcomes.length} dead letters of ${name} delivered`;
    });
    if (result && result.status === 200 && deadLetters.trigger === name) openDeadLetters(name);
  }

  // ---------------------------------------------------------------------------------------------------------
  // The filter tester

  async function testFilter(event) {
    event.preventDefault();
    const output = $("filter-result");
    clear(output);
    const request = {
      channel: $("filter-channel").value,
      event: $("filter-event").value,
      filter: $("filter-text").value,
      language: $("filter-language").value,
      include_invalid: $("filter-invalid").checked,
    };
    for (const [key, id] of [["from", "filter-from"], ["to", "filter-to"]]) {
      const value = $(id).value.trim();
      if (value !== "") request[key] = Number(value);
    }
    $("filter-run").disabled = true;
    let result;
    try {
      result = await api("POST", "v1/filters/test", request);
    } catch (error) {
      if (!(error instanceof Unauthorized)) output.appendChild(el("p", { class: "problem", text: `The admin API cannot be reached: ${error.message}` }));
      return;
    } finally {
      $("filter-run").disabled = false;
    }
    const routeMissing =
      result.status === 405 ||
      (result.status === 404 && result.body && result.body.error && String(result.body.error.message).startsWith("no route"));
    if (routeMissing) {
      output.appendChild(el("p", { class: "problem", text: "The filter tester is not available on this daemon." }));
      return;
    }
    if (result.status !== 200) {
      output.appendChild(el("p", { class: "problem", text: errorMessage(result) }));
      return;
    }
    const events = (result.body && result.body.events) || [];
    output.appendChild(el("p", { class: "muted", text: `${events.length} event${events.length === 1 ? "" : "s"}` }));
    for (const item of events) {
      const outputs = item.outputs || [];
      const node = el(
        "div",
        { class: "event" },
        el("div", { class: "sub mono", text: `block ${item.block}, event ${item.index} · ${item.type} · ${item.id}` }),
      );
      if (item.error) node.appendChild(el("pre", { class: "problem", text: `error: ${item.error}` }));
      else if (outputs.length === 0) node.appendChild(el("p", { class: "muted", text: `nothing pushed: ${NOT_PUSHED[item.reason] || "the filter gave no output"}` }));
      for (const value of outputs) node.appendChild(el("pre", { class: "output", text: JSON.stringify(value, null, 2) }));
      output.appendChild(node);
    }
    if (result.body && result.body.held) {
      output.appendChild(el("p", { class: "problem", text: "A trigger with this filter would hold at the failing event (Exception): nothing after it is tested." }));
    }
  }

  /** Why an event pushed nothing, by the tester's `reason`. */
  const NOT_PUSHED = {
    filtered_out: "the filter gave no output",
    not_of_type: "not of the chosen event type",
    invalid_left_out: "an invalid transaction, left out (include invalid to test it)",
  };

  // ---------------------------------------------------------------------------------------------------------

  function start() {
    $("login-form").addEventListener("submit", login);
    $("forget").addEventListener("click", () => askToken(null));
    $("dead-letters-close").addEventListener("click", () => {
      $("dead-letters").hidden = true;
      deadLetters.trigger = null;
    });
    $("dead-letters-more").addEventListener("click", loadDeadLetters);
    $("dead-letters-repush-all").addEventListener("click", repushAll);
    $("filter-form").addEventListener("submit", testFilter);
    if (token) showMain();
    else askToken(null);
  }

  start();
})();
