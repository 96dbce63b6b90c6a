// The chat page: join /chat/ROOM over a WebSocket, send text, show messages and who is present.
// Protocol (docs/usage.md, "Chat mode"): we send plain text; the server sends JSON events
// welcome / join / leave / message / error. Presence deltas carry a version: the welcome's member list
// already includes every change up to its version, later joins and leaves are applied on top.
(function () {
  const $ = (id) => document.getElementById(id);
  const ROOM = /^[A-Za-z0-9_.-]{1,64}$/;
  const state = { ws: null, room: "", you: null, members: new Map(), base: -1, node: "", pending: [], welcomed: false };

  function roomFromPath() {
    const m = location.pathname.match(/^\/chat\/([^/]*)$/);
    if (!m) return "";
    try {
      return decodeURIComponent(m[1]);
    } catch (e) {
      return "";
    }
  }

  function setStatus(kind, text) {
    $("status").className = "pill " + kind;
    $("status").textContent = text;
  }

  function line(text, cls) {
    const el = document.createElement("div");
    el.className = "sys" + (cls ? " " + cls : "");
    el.textContent = text;
    append(el);
  }

  function append(el) {
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.appendChild(el);
    if (atBottom || el.classList.contains("mine")) box.scrollTop = box.scrollHeight;
  }

  function time(ts) {
    const d = ts ? new Date(ts) : new Date();
    return d.toTimeString().slice(0, 5);
  }

  function showMessage(m) {
    const el = document.createElement("div");
    const mine = state.you && m.from.id === state.you.id;
    el.className = "msg" + (mine ? " mine" : "");
    const head = document.createElement("div");
    head.className = "head";
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = mine ? "you" : m.from.name;
    const at = document.createElement("span");
    at.textContent = time(m.ts);
    head.append(from, at);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.text;
    el.append(head, text);
    el.dataset.from = m.from.name;
    append(el);
  }

  function renderMembers() {
    const list = $("members");
    list.textContent = "";
    const sorted = Array.from(state.members.entries()).sort((a, b) => a[1].localeCompare(b[1]));
    for (const [id, name] of sorted) {
      const li = document.createElement("li");
      li.textContent = name + (state.you && id === state.you.id ? " (you)" : "");
      li.dataset.name = name;
      if (state.you && id === state.you.id) li.className = "you";
      list.appendChild(li);
    }
    $("member-count").textContent = String(state.members.size);
    $("member-count").dataset.value = String(state.members.size);
  }

  // A join or leave: applied when it is newer than the welcome's snapshot. With a broker, events carry
  // their node's tag and versions count per node: the welcome's covers the newcomer's node only.
  function presence(m, announce) {
    if ((m.node || "") === state.node && m.version <= state.base) return;
    if (m.type === "join") state.members.set(m.member.id, m.member.name);
    else state.members.delete(m.member.id);
    if (announce && !(state.you && m.member.id === state.you.id)) {
      line(m.member.name + (m.type === "join" ? " joined" : " left"));
    }
  }

  function onEvent(m) {
    switch (m.type) {
      case "welcome":
        state.you = m.you;
        state.base = m.version;
        state.node = m.node || "";
        state.members = new Map(m.members.map((x) => [x.id, x.name]));
        state.welcomed = true;
        for (const p of state.pending) presence(p, false);
        state.pending = [];
        line("You joined #" + m.room + " as " + m.you.name + ".");
        setStatus("live", "joined as " + m.you.name);
        $("compose").disabled = false;
        $("send").disabled = false;
        $("compose").focus();
        renderMembers();
        break;
      case "join":
      case "leave":
        if (!state.welcomed) state.pending.push(m);
        else {
          presence(m, true);
          renderMembers();
        }
        break;
      case "message":
        showMessage(m);
        break;
      case "error":
        line("Not sent: " + m.error, "error");
        break;
    }
  }

  function join(room, name) {
    state.room = room;
    state.welcomed = false;
    state.base = -1;
    state.pending = [];
    state.members = new Map();
    $("join").classList.add("hidden");
    $("chat").classList.remove("hidden");
    $("title").textContent = "#" + room;
    $("room-title").textContent = "#" + room;
    document.title = "#" + room + " · wsloop chat";
    setStatus("", "connecting");
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    const query = name ? "?name=" + encodeURIComponent(name) : "";
    const ws = new WebSocket(proto + location.host + "/chat/" + encodeURIComponent(room) + query);
    state.ws = ws;
    ws.onmessage = (event) => {
      let m;
      try {
        m = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onEvent(m);
    };
    ws.onclose = (event) => {
      if (state.ws !== ws) return;
      $("compose").disabled = true;
      $("send").disabled = true;
      setStatus("down", "disconnected");
      line("Disconnected (" + event.code + (event.reason ? ": " + event.reason : "") + "). Reload to join again.",
        "error");
      state.members = new Map();
      renderMembers();
    };
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("join-room").value.trim();
    const name = $("join-name").value.trim();
    if (!ROOM.test(room)) {
      $("join-error").textContent = "A room name is 1 to 64 letters, digits, '-', '_' or '.'.";
      return;
    }
    try {
      localStorage.setItem("wsloop-chat-name", name);
    } catch (e) {
      // Storage may be off; the name is only a convenience.
    }
    if (roomFromPath() !== room) history.replaceState(null, "", "/chat/" + room);
    join(room, name);
  });

  $("compose-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("compose");
    const text = input.value;
    if (!text.trim() || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    state.ws.send(text);
    input.value = "";
    input.focus();
  });

  window.addEventListener("pagehide", () => {
    if (state.ws) state.ws.close(1000, "page closed");
  });

  const initialRoom = roomFromPath();
  $("join-room").value = ROOM.test(initialRoom) ? initialRoom : "lobby";
  let saved = "";
  try {
    saved = localStorage.getItem("wsloop-chat-name") || "";
  } catch (e) {
    saved = "";
  }
  const fromQuery = new URLSearchParams(location.search).get("name");
  $("join-name").value = fromQuery !== null ? fromQuery : saved;
  $("join-name").focus();
})();
