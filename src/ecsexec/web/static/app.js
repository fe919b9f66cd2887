/*
 * The console's own script: plain JavaScript, no build, no inline code (the server's
 * Content-Security-Policy allows scripts from 'self' only). Pages pass data through
 * data-attributes and <meta name="csrf-token">. Every action goes through the REST API
 * with fetch and the X-CSRF-Token header; live run output comes from an EventSource on
 * /api/v1/runs/ID/events and is rendered at most once per animation frame.
 */
"use strict";

(function () {
  // ---- REST API ------------------------------------------------------------------------

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function api(method, url, body) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new Error("The server could not be reached: " + err.message);
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.indexOf("json") !== -1) {
      data = await response.json();
    }
    if (!response.ok) {
      const message =
        data && data.error && data.error.message
          ? data.error.message
          : "The server answered " + response.status + " " + response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function showError(element, message) {
    if (!element) return;
    element.textContent = message || "";
    element.hidden = !message;
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      const args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () {
        fn.apply(null, args);
      }, ms);
    };
  }

  // ---- node filter helpers (mirror pages.add_filter_term; docs/node-filter.md §1-§2) ------

  function addFilterTerm(current, key, value) {
    if (/[\x00-\x20,]|^['"]|^$/.test(value)) {
      value = '"' + value.replace(/"/g, '""') + '"';
    }
    let term = key + ": " + value;
    if (key === "name" && value.indexOf(":") === -1 && value[0] !== "!") term = value;
    current = current.trim();
    return current ? current + " " + term : term;
  }

  function setQuery(params) {
    const url = new URL(window.location.href);
    Object.keys(params).forEach(function (key) {
      if (params[key] === "" || params[key] === null || params[key] === undefined) {
        url.searchParams.delete(key);
      } else {
        url.searchParams.set(key, params[key]);
      }
    });
    window.history.replaceState(null, "", url.pathname + url.search);
  }

  // A page fetch that the server sent to the sign-in page: the session ended; go there.
  function signedOut(response) {
    if (response.redirected && new URL(response.url).pathname === "/login") {
      window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
      return true;
    }
    return false;
  }

  async function previewNodes(filter) {
    const response = await fetch("/nodes/preview?filter=" + encodeURIComponent(filter), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (signedOut(response)) throw new Error("Your session has ended: sign in again.");
    if (!response.ok) throw new Error("The node count is not available (" + response.status + ")");
    return response.json();
  }

  // ---- Nodes page: live filter, click an attribute value to narrow the filter -------------

  function setUpNodesPage(form) {
    const input = form.querySelector("[data-node-filter]");
    const holder = document.querySelector("[data-nodes-table]");
    let latest = 0;

    async function refresh() {
      const filter = input.value;
      const ticket = ++latest;
      setQuery({ filter: filter });
      const response = await fetch(
        "/nodes?partial=table&filter=" + encodeURIComponent(filter),
        { credentials: "same-origin" }
      );
      if (signedOut(response)) return;
      if (ticket !== latest || !response.ok) return; // a newer request is on its way
      holder.innerHTML = await response.text(); // our own server-rendered, escaped fragment
    }
    const later = debounce(refresh, 250);
    input.addEventListener("input", later);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      refresh();
    });
    holder.addEventListener("click", function (event) {
      const link = event.target.closest("a[data-filter-key]");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      input.value = addFilterTerm(input.value, link.dataset.filterKey, link.dataset.filterValue);
      refresh();
      input.focus();
    });
  }

  // ---- live run view ----------------------------------------------------------------------

  const KEEP_CHARS = 1024 * 1024; // per node kept in the page; the rest is in the download
  const SHOWN_CHARS = 32 * 1024; // per node rendered until "Show all"
  const OK_STATUSES = { succeeded: true, recovered: true };
  const EVENT_TYPES = ["run_started", "node_started", "output", "node_finished", "run_finished", "error"];

  // Terminal control sequences (colours, cursor moves, titles) mean nothing in a <pre>;
  // the download keeps them. A sequence cut between two events waits for its end.
  const ESCAPES = /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
  const OPEN_ESCAPE = /\x1b(?:\[[0-?]*[ -\/]*|\][^\x07\x1b]*|\x1b?)?$/;

  function withoutEscapes(node, text) {
    text = (node.held || "") + text;
    node.held = "";
    const open = OPEN_ESCAPE.exec(text);
    if (open && open[0].length < 256) {
      node.held = open[0];
      text = text.slice(0, open.index);
    }
    return text.replace(ESCAPES, "");
  }

  function chip(status) {
    const span = document.createElement("span");
    span.className = "chip status-" + String(status).replace(/ /g, "-");
    span.textContent = status;
    return span;
  }

  function RunView(root) {
    this.root = root;
    this.results = root.querySelector("[data-node-results]");
    this.summary = root.querySelector("[data-run-summary]");
    this.statusHolder = root.querySelector("[data-run-status]");
    this.errorBox = root.querySelector("[data-run-error]");
    this.stopButton = root.querySelector("[data-stop-button]");
    this.groupToggle = root.querySelector("[data-group-toggle]");
    this.failedToggle = root.querySelector("[data-failed-toggle]");
    this.nodes = new Map();
    this.cards = new Map(); // card key -> {element, signature, shown}
    this.framePending = false;
    this.finished = false;
    this.source = null;
    this.onFinished = null;
    const view = this;
    this.stopButton.addEventListener("click", function () {
      view.stop();
    });
    this.groupToggle.addEventListener("change", function () {
      view.schedule();
    });
    this.failedToggle.addEventListener("change", function () {
      view.schedule();
    });
    this.results.addEventListener("click", function (event) {
      const button = event.target.closest("[data-show-all]");
      if (!button) return;
      button.closest(".node-result").dataset.expanded = "true";
      for (const name of button.dataset.showAll.split("\n")) {
        const node = view.nodes.get(name);
        if (node) node.expanded = true;
      }
      view.cards.forEach(function (card) {
        card.signature = "";
      });
      view.schedule();
    });
  }

  RunView.prototype.start = function (runId) {
    this.runId = String(runId);
    this.root.hidden = false;
    this.root.dataset.runId = this.runId;
    this.root.querySelector("[data-run-number]").textContent = this.runId;
    this.root.querySelector("[data-run-link]").href = "/activity/" + this.runId;
    this.root.querySelector("[data-activity-link]").href = "/activity/" + this.runId;
    this.statusHolder.replaceChildren(chip("running"));
    this.stopButton.disabled = false;
    this.finished = false;
    this.nodes.clear();
    this.cards.clear();
    this.results.replaceChildren();
    showError(this.errorBox, "");
    this.connect();
  };

  RunView.prototype.connect = function () {
    const view = this;
    const source = new EventSource("/api/v1/runs/" + encodeURIComponent(this.runId) + "/events");
    this.source = source;
    EVENT_TYPES.forEach(function (type) {
      source.addEventListener(type, function (event) {
        if (!event.data) return;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        view.onEvent(data.type || type, data);
      });
    });
    source.onerror = function () {
      if (view.finished) {
        source.close();
      } else if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (an unknown run, say): no more events will come.
        showError(view.errorBox, "The live output stopped. The run's page in Activity has what was recorded.");
        view.stopButton.disabled = true;
        if (view.onFinished) view.onFinished("unknown");
      }
      // Otherwise the browser reconnects by itself and resumes with Last-Event-ID.
    };
  };

  RunView.prototype.node = function (name) {
    let node = this.nodes.get(name);
    if (!node) {
      node = { name: name, status: "pending", exitCode: null, text: "", dropped: 0, error: "", duration: null, version: 0, expanded: false };
      this.nodes.set(name, node);
    }
    return node;
  };

  RunView.prototype.onEvent = function (type, data) {
    if (type === "run_started") {
      (data.nodes || []).forEach(this.node, this);
    } else if (type === "node_started") {
      this.node(data.node).status = "running";
    } else if (type === "output") {
      const node = this.node(data.node);
      if (node.status === "pending") node.status = "running";
      const room = KEEP_CHARS - node.text.length;
      const text = withoutEscapes(node, data.text || "");
      if (room >= text.length) {
        node.text += text;
      } else {
        node.text += text.slice(0, Math.max(room, 0));
        node.dropped += text.length - Math.max(room, 0);
      }
      node.version++;
    } else if (type === "node_finished") {
      const node = this.node(data.node);
      node.status = data.status || "finished";
      node.exitCode = data.exit_code === undefined ? null : data.exit_code;
      node.error = data.error || "";
      node.duration = data.duration_s === undefined ? null : data.duration_s;
      node.version++;
    } else if (type === "run_finished") {
      this.finish(data.status || "finished", data.exit_code);
    } else if (type === "error") {
      showError(this.errorBox, data.message || "The run failed.");
    }
    this.schedule();
  };

  RunView.prototype.finish = function (status, exitCode) {
    this.finished = true;
    if (this.source) this.source.close();
    this.stopButton.disabled = true;
    const holder = this.statusHolder;
    holder.replaceChildren(chip(status));
    if (exitCode !== undefined && exitCode !== null) {
      const code = document.createElement("span");
      code.className = "exit-code";
      code.textContent = " exit " + exitCode;
      holder.append(code);
    }
    this.root.dataset.finished = status;
    if (this.onFinished) this.onFinished(status);
  };

  RunView.prototype.stop = async function () {
    this.stopButton.disabled = true;
    try {
      await api("POST", "/api/v1/runs/" + encodeURIComponent(this.runId) + "/stop");
    } catch (err) {
      showError(this.errorBox, err.message);
      this.stopButton.disabled = this.finished;
    }
  };

  RunView.prototype.schedule = function () {
    if (this.framePending) return;
    this.framePending = true;
    const view = this;
    window.requestAnimationFrame(function () {
      view.framePending = false;
      view.render();
    });
  };

  // One card per node, or per set of finished nodes whose outcome and output are identical.
  RunView.prototype.render = function () {
    const group = this.groupToggle.checked;
    const onlyFailed = this.failedToggle.checked;
    const wanted = new Map();
    const counts = { total: 0, running: 0, ok: 0, failed: 0, pending: 0 };
    this.nodes.forEach(function (node) {
      counts.total++;
      const done = node.status !== "pending" && node.status !== "running";
      if (!done) counts[node.status]++;
      else if (OK_STATUSES[node.status]) counts.ok++;
      else counts.failed++;
      if (onlyFailed && (!done || OK_STATUSES[node.status])) return;
      const key =
        group && done && !node.dropped
          ? "g\u0000" + node.status + "\u0000" + node.exitCode + "\u0000" + node.error + "\u0000" + node.text
          : "n\u0000" + node.name;
      const card = wanted.get(key);
      if (card) card.names.push(node.name);
      else wanted.set(key, { names: [node.name], node: node });
    });

    let previous = null;
    const view = this;
    wanted.forEach(function (card, key) {
      let existing = view.cards.get(key);
      if (!existing) {
        existing = { element: view.newCard(), signature: "", shown: "" };
        view.cards.set(key, existing);
      }
      const node = card.node;
      const signature = card.names.join("\n") + "\u0000" + node.status + "\u0000" + node.version + "\u0000" + node.expanded;
      if (existing.signature !== signature) {
        view.fillCard(existing, card.names, node);
        existing.signature = signature;
      }
      const element = existing.element;
      const expected = previous ? previous.nextSibling : view.results.firstChild;
      if (expected !== element) view.results.insertBefore(element, expected);
      previous = element;
    });
    this.cards.forEach(function (card, key) {
      if (!wanted.has(key)) {
        card.element.remove();
        view.cards.delete(key);
      }
    });
    const parts = [counts.total + (counts.total === 1 ? " node" : " nodes")];
    if (counts.ok) parts.push(counts.ok + " succeeded");
    if (counts.failed) parts.push(counts.failed + " failed");
    if (counts.running) parts.push(counts.running + " running");
    if (counts.pending) parts.push(counts.pending + " waiting");
    this.summary.textContent = parts.join(", ");
  };

  RunView.prototype.newCard = function () {
    const article = document.createElement("article");
    article.className = "node-result";
    const header = document.createElement("header");
    const pre = document.createElement("pre");
    pre.className = "output";
    const detail = document.createElement("p");
    detail.className = "detail";
    const more = document.createElement("p");
    more.className = "more muted small";
    article.append(header, detail, pre, more);
    return article;
  };

  RunView.prototype.fillCard = function (card, names, node) {
    const article = card.element;
    const [header, detail, pre, more] = article.children;
    // The header changes with the node's status, not with each line of output.
    const headerKey = names.join("\n") + "\u0000" + node.status + "\u0000" + node.exitCode;
    if (card.headerKey !== headerKey) {
      card.headerKey = headerKey;
      this.fillHeader(article, header, names, node);
    }
    detail.textContent = node.error;
    detail.hidden = !node.error;

    // Append only what is new while the shown prefix grows: no re-layout of old text.
    const limit = node.expanded ? KEEP_CHARS : SHOWN_CHARS;
    const shown = node.text.length > limit ? node.text.slice(0, limit) : node.text;
    if (shown.startsWith(card.shown) && pre.firstChild !== null) {
      if (shown.length > card.shown.length) pre.append(shown.slice(card.shown.length));
    } else {
      pre.textContent = shown;
    }
    card.shown = shown;
    pre.hidden = shown.length === 0;

    more.replaceChildren();
    if (node.text.length > limit || node.dropped) {
      const total = node.text.length + node.dropped;
      more.append("Showing " + shown.length + " of " + total + " characters. ");
      if (!node.expanded && node.text.length > limit) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link-button";
        button.dataset.showAll = names.join("\n");
        button.textContent = "Show all";
        more.append(button, " ");
      }
      if (names.length === 1) {
        const link = document.createElement("a");
        link.href = "/api/v1/runs/" + encodeURIComponent(this.runId) + "/nodes/" + encodeURIComponent(names[0]) + "/log";
        link.setAttribute("download", "");
        link.textContent = "Download the full log";
        more.append(link);
      }
    }
    more.hidden = more.childNodes.length === 0;
  };

  RunView.prototype.fillHeader = function (article, header, names, node) {
    article.dataset.node = names.join(" ");
    article.dataset.status = node.status;
    const title = document.createElement("span");
    title.className = "node-names";
    title.textContent = names.length > 1 ? names.length + " nodes: " + names.join(", ") : names[0];
    const parts = [chip(node.status), title];
    if (node.exitCode !== null && node.exitCode !== undefined) {
      const code = document.createElement("span");
      code.className = "exit-code";
      code.textContent = "exit " + node.exitCode;
      parts.push(code);
    }
    if (node.duration !== null && node.duration !== undefined) {
      const took = document.createElement("span");
      took.className = "muted";
      took.textContent = Number(node.duration).toFixed(2) + " s";
      parts.push(took);
    }
    if (names.length === 1) {
      const link = document.createElement("a");
      link.className = "download";
      link.href = "/api/v1/runs/" + encodeURIComponent(this.runId) + "/nodes/" + encodeURIComponent(names[0]) + "/log";
      link.setAttribute("download", "");
      link.textContent = "Download log";
      parts.push(link);
    }
    header.replaceChildren.apply(header, parts);
  };

  // ---- Commands page ------------------------------------------------------------------------

  function setUpCommandsPage(form, view) {
    const filterInput = form.querySelector('[name="filter"]');
    const commandInput = form.querySelector('[name="command"]');
    const threadsInput = form.querySelector('[name="threads"]');
    const keepgoingInput = form.querySelector('[name="keepgoing"]');
    const matchCount = form.querySelector("[data-match-count]");
    const errorBox = form.querySelector("[data-form-error]");
    const confirmBox = form.querySelector("[data-confirm]");
    const runButton = form.querySelector("[data-run-button]");
    const confirmAbove = Number(form.dataset.confirmAbove || "20");
    let latest = 0;

    async function count() {
      const filter = filterInput.value.trim();
      const ticket = ++latest;
      if (!filter) {
        matchCount.textContent = "";
        return null;
      }
      try {
        const preview = await previewNodes(filter);
        if (ticket === latest) {
          matchCount.textContent = preview.error
            ? preview.error
            : preview.count + (preview.count === 1 ? " node matches" : " nodes match") +
              (preview.names.length ? ": " + preview.names.join(", ") + (preview.count > preview.names.length ? ", …" : "") : "") +
              (preview.warnings.length ? " (" + preview.warnings.join("; ") + ")" : "");
        }
        return preview;
      } catch (err) {
        matchCount.textContent = err.message;
        return null;
      }
    }
    filterInput.addEventListener("input", debounce(count, 250));
    if (filterInput.value) count();

    function setRunning(running) {
      runButton.disabled = running;
      commandInput.disabled = running;
      filterInput.disabled = running;
    }
    view.onFinished = function () {
      setRunning(false);
    };

    async function start() {
      confirmBox.hidden = true;
      const body = {
        filter: filterInput.value.trim(),
        command: commandInput.value,
        keepgoing: keepgoingInput.checked,
      };
      if (threadsInput.value) body.threads = Number(threadsInput.value);
      setRunning(true);
      try {
        const answer = await api("POST", "/api/v1/runs", body);
        setQuery({ filter: body.filter, command: body.command, run: answer.id });
        view.start(answer.id);
      } catch (err) {
        setRunning(false);
        showError(errorBox, err.message);
      }
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(errorBox, "");
      if (!filterInput.value.trim()) {
        showError(errorBox, "Node filter: give a filter that selects the nodes to run on.");
        filterInput.focus();
        return;
      }
      if (!commandInput.value.trim()) {
        showError(errorBox, "Command: give the command to run.");
        commandInput.focus();
        return;
      }
      const preview = await count();
      if (preview && preview.error) {
        showError(errorBox, "Node filter: " + preview.error);
        return;
      }
      if (preview && preview.count === 0) {
        showError(errorBox, "Node filter: no node you may use matches it.");
        return;
      }
      if (preview && preview.count > confirmAbove) {
        form.querySelector("[data-confirm-text]").textContent =
          "Run this command on " + preview.count + " nodes?";
        confirmBox.hidden = false;
        form.querySelector("[data-confirm-yes]").focus();
        return;
      }
      start();
    });
    form.querySelector("[data-confirm-yes]").addEventListener("click", start);
    form.querySelector("[data-confirm-no]").addEventListener("click", function () {
      confirmBox.hidden = true;
    });
    if (view.root.dataset.runId) {
      setRunning(true);
      view.start(view.root.dataset.runId);
    }
  }

  // ---- Job page -----------------------------------------------------------------------------

  function checkOption(field) {
    const control = field.querySelector("input, select");
    const errorBox = field.querySelector("[data-field-error]");
    const label = field.dataset.option;
    const value = control.value;
    let message = "";
    if (control.required && value === "") {
      message = label + " is required.";
    } else if (value !== "" && control.dataset.regex) {
      let pattern = null;
      try {
        pattern = new RegExp("^(?:" + control.dataset.regex + ")$");
      } catch (err) {
        pattern = null; // a Java-only construct: the server checks it
      }
      if (pattern && !pattern.test(value)) {
        message = label + " must match " + control.dataset.regex + ".";
      }
    }
    showError(errorBox, message);
    control.setAttribute("aria-invalid", message ? "true" : "false");
    return message === "";
  }

  function setUpJobPage(form, view) {
    const errorBox = form.querySelector("[data-form-error]");
    const button = form.querySelector('button[type="submit"]');
    const fields = Array.prototype.slice.call(form.querySelectorAll("[data-option]"));
    fields.forEach(function (field) {
      field.querySelector("input, select").addEventListener("change", function () {
        checkOption(field);
      });
    });
    view.onFinished = function () {
      button.disabled = false;
    };
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(errorBox, "");
      const valid = fields.map(checkOption).every(Boolean);
      if (!valid) {
        showError(errorBox, "Some options need fixing: see the messages above.");
        return;
      }
      const options = {};
      fields.forEach(function (field) {
        const control = field.querySelector("input, select");
        if (control.value !== "") options[field.dataset.option] = control.value;
      });
      button.disabled = true;
      try {
        const answer = await api("POST", form.dataset.runUrl, { options: options });
        // Secure values leave the page as soon as they are sent.
        form.querySelectorAll('input[type="password"]').forEach(function (input) {
          input.value = "";
        });
        setQuery({ run: answer.id });
        view.start(answer.id);
      } catch (err) {
        button.disabled = false;
        showError(errorBox, err.message);
      }
    });
    if (view.root.dataset.runId) {
      button.disabled = true;
      view.start(view.root.dataset.runId);
    }
  }

  // ---- Keys page ----------------------------------------------------------------------------

  function keyUrl(path) {
    return "/api/v1/keys/" + path.split("/").map(encodeURIComponent).join("/");
  }

  // A destructive button asks once more on the page (no browser dialog): the first click
  // arms it under a new label, the second sends DELETE; done() then updates the page.
  async function deleteOnSecondClick(button, confirmLabel, url, errorBox, done) {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = confirmLabel;
      return;
    }
    button.disabled = true;
    try {
      await api("DELETE", url);
      done();
    } catch (err) {
      button.disabled = false;
      showError(errorBox, err.message);
    }
  }

  function setUpKeysPage(form) {
    const errorBox = form.querySelector("[data-form-error]");
    const pathInput = form.querySelector('[name="path"]');
    const valueInput = form.querySelector('[name="value"]');
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(errorBox, "");
      const path = pathInput.value.trim();
      const value = valueInput.value;
      if (!path) return showError(errorBox, "Path: give where to store the password, e.g. keys/team/db.");
      if (!value) return showError(errorBox, "Password: give the password to store.");
      valueInput.value = ""; // write-only: the page keeps no copy
      try {
        await api("PUT", keyUrl(path), { type: "password", value: value });
        window.location.reload();
      } catch (err) {
        showError(errorBox, err.message);
      }
    });
    document.addEventListener("click", async function (event) {
      const button = event.target.closest("[data-delete-key]");
      if (!button) return;
      await deleteOnSecondClick(button, "Confirm delete", keyUrl(button.dataset.deleteKey), errorBox, function () {
        button.closest("tr").remove();
      });
    });
  }

  // ---- Tokens page --------------------------------------------------------------------------

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) {
      const span = document.createElement("span");
      span.className = className;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function tokenRow(token) {
    // Built from the API's answer with textContent only; the token itself is never put in it.
    const row = document.createElement("tr");
    row.dataset.tokenId = token.id;
    row.dataset.tokenState = "active";
    const stamp = function (text) {
      return text ? text.slice(0, 19).replace("T", " ") + " UTC" : "never";
    };
    row.appendChild(cell(token.name));
    row.appendChild(cell(stamp(token.created_at)));
    row.appendChild(cell(stamp(token.expires_at)));
    row.appendChild(cell(stamp(token.last_used_at)));
    const status = cell("active", "chip token-active");
    status.dataset.tokenStatus = "";
    row.appendChild(status);
    const actions = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "danger small";
    button.dataset.revokeToken = token.id;
    button.setAttribute("aria-label", "Revoke " + token.name);
    button.textContent = "Revoke";
    actions.appendChild(button);
    row.appendChild(actions);
    return row;
  }

  function setUpTokensPage(form) {
    const errorBox = form.querySelector("[data-form-error]");
    const nameInput = form.querySelector('[name="name"]');
    const daysInput = form.querySelector('[name="expires_in_days"]');
    const button = form.querySelector('button[type="submit"]');
    const shown = document.querySelector("[data-new-token]");
    const valueField = shown.querySelector("[data-new-token-value]");
    const copyStatus = shown.querySelector("[data-copy-status]");
    const tbody = document.querySelector("[data-tokens-table] tbody");
    const revokeError = document.querySelector("[data-revoke-error]");

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError(errorBox, "");
      const name = nameInput.value.trim();
      if (!name) return showError(errorBox, "Token name: give the token a name, e.g. ci-deploy.");
      const body = { name: name };
      const days = daysInput.value.trim();
      if (days !== "") {
        if (!/^[0-9]+$/.test(days)) {
          return showError(errorBox, "Expires in days: give a whole number of days, or leave it empty.");
        }
        body.expires_in_days = Number(days); // the API checks the range and names it
      }
      button.disabled = true;
      try {
        const created = await api("POST", "/api/v1/tokens", body);
        valueField.value = created.token; // shown once: only this field ever holds it
        copyStatus.textContent = "";
        shown.hidden = false;
        const empty = tbody.querySelector("[data-no-tokens]");
        if (empty) empty.remove();
        tbody.insertBefore(tokenRow(created), tbody.firstChild);
        form.reset();
        valueField.focus();
        valueField.select();
      } catch (err) {
        showError(errorBox, err.message);
      } finally {
        button.disabled = false;
      }
    });

    shown.querySelector("[data-copy-token]").addEventListener("click", async function () {
      valueField.select();
      try {
        await navigator.clipboard.writeText(valueField.value);
        copyStatus.textContent = "Copied.";
      } catch (err) {
        const copied = document.execCommand && document.execCommand("copy");
        copyStatus.textContent = copied ? "Copied." : "Select the token and copy it yourself.";
      }
    });

    tbody.addEventListener("click", async function (event) {
      const revoke = event.target.closest("[data-revoke-token]");
      if (!revoke) return;
      showError(revokeError, "");
      const url = "/api/v1/tokens/" + encodeURIComponent(revoke.dataset.revokeToken);
      await deleteOnSecondClick(revoke, "Confirm revoke", url, revokeError, function () {
        const row = revoke.closest("tr");
        row.dataset.tokenState = "revoked";
        const status = row.querySelector("[data-token-status]");
        status.textContent = "";
        const chip = document.createElement("span");
        chip.className = "chip token-revoked";
        chip.textContent = "revoked";
        status.appendChild(chip);
        revoke.remove();
      });
    });
  }

  // ---- Terminal page ------------------------------------------------------------------------

  function setUpTerminal(element) {
    const status = document.querySelector("[data-terminal-status]");
    if (typeof window.Terminal !== "function" || !window.FitAddon) {
      status.textContent = "The terminal library did not load.";
      return;
    }
    const term = new window.Terminal({
      cursorBlink: true,
      scrollback: 5000,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 14,
    });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(element);
    fit.fit();
    window.ecsexecTerminal = term; // for tests and the browser console

    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + element.dataset.wsPath);
    socket.binaryType = "arraybuffer";
    const encoder = new TextEncoder();

    function sendSize() {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
      }
    }
    socket.addEventListener("open", function () {
      sendSize(); // before anything else: the server waits for it to size the PTY
      status.textContent = "Connected.";
      element.dataset.state = "open";
      term.focus();
    });
    socket.addEventListener("message", function (event) {
      if (typeof event.data === "string") {
        let control = null;
        try {
          control = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (control.type === "exit") {
          term.write("\r\n[session ended]\r\n");
          status.textContent =
            "Session ended" + (control.exit_code !== null && control.exit_code !== undefined ? " (exit " + control.exit_code + ")" : "") + ".";
        } else if (control.type === "error") {
          term.write("\r\n[" + control.message + "]\r\n");
          status.textContent = control.message;
        }
        return;
      }
      term.write(new Uint8Array(event.data));
    });
    socket.addEventListener("close", function (event) {
      element.dataset.state = "closed";
      if (status.textContent === "Connected." || status.textContent.indexOf("Connecting") === 0) {
        status.textContent = "Disconnected" + (event.reason ? ": " + event.reason : ".");
      }
    });
    term.onData(function (data) {
      if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    });
    term.onBinary(function (data) {
      if (socket.readyState !== WebSocket.OPEN) return;
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
      socket.send(bytes);
    });
    term.onResize(sendSize);
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(function () {
        fit.fit();
      }).observe(element);
    } else {
      window.addEventListener("resize", function () {
        fit.fit();
      });
    }
  }

  // For the page benchmark (bench/web_live_output.py) and the browser console.
  window.ecsexec = { RunView: RunView, addFilterTerm: addFilterTerm };

  // ---- start-up ---------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", function () {
    const nodesForm = document.querySelector("[data-node-filter-form]");
    if (nodesForm) setUpNodesPage(nodesForm);
    const runRoot = document.querySelector("[data-run-view]");
    const view = runRoot ? new RunView(runRoot) : null;
    const commandForm = document.querySelector("[data-command-form]");
    if (commandForm && view) setUpCommandsPage(commandForm, view);
    const jobForm = document.querySelector("[data-job-form]");
    if (jobForm && view) setUpJobPage(jobForm, view);
    if (view && !commandForm && !jobForm && runRoot.dataset.runId) {
      view.onFinished = function (status) {
        // The recorded outcome, with downloads; not when the stream was refused (a run
        // this server is not running, e.g. one a CLI is recording), or it would loop.
        if (status !== "unknown") window.location.reload();
      };
      view.start(runRoot.dataset.runId);
    }
    const keyForm = document.querySelector("[data-key-form]");
    if (keyForm) setUpKeysPage(keyForm);
    const tokenForm = document.querySelector("[data-token-form]");
    if (tokenForm) setUpTokensPage(tokenForm);
    const terminal = document.querySelector("[data-terminal]");
    if (terminal) setUpTerminal(terminal);
  });
})();
