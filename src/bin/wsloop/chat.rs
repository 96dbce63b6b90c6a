//! `wsloop serve --mode chat`: rooms on `/chat/ROOM`, with presence.
//!
//! A connection on `/chat/ROOM?name=NAME` joins the engine topic `ROOM` ([`Ctx::subscribe`]); every text
//! message it sends is published to `ROOM` ([`Ctx::publish_text`]) as a JSON envelope and reaches every
//! member, the sender included. Who is present is kept here, per room, behind one mutex (handlers run on
//! every reactor thread); joins and leaves are published to the room as JSON events with a version
//! number, so a client orders them whatever reactor they came from. Every other path echoes, so a chat
//! server is also a target for `wsloop bench`. The protocol is described in docs/usage.md ("Chat mode").
//!
//! With `--broker URL` the topics are shared with every `wsloop serve --mode chat` using the same Redis:
//! messages reach members on every node, and so do join and leave events. Presence stays per process:
//! ids get the node's tag in front (`3f2a9c1e:0:1.1`) so they are unique across nodes, presence events
//! and the welcome carry the node's tag (`node`), and a client checks versions only against events of its
//! own node (other nodes count their own). The member list in a welcome covers the newcomer's node;
//! members elsewhere appear as they join.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{json, Value};
use wsloop::proto::handshake::UpgradeRequest;
use wsloop::proto::CloseCode;
use wsloop::server::{Ctx, Handler, Message};

/// Chat-mode options (`--mode chat`).
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Chat mode (--mode chat)")]
pub(crate) struct ChatArgs {
    /// Longest chat message in bytes; a longer one is refused with an error event to its sender.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_max_text: u32,
    /// Share the rooms with every node using this Redis (redis://HOST:PORT): messages and joins and
    /// leaves reach members on every node. Needs a build with the `redis` feature.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
}

/// Where chat connections live: `/chat/ROOM`.
pub(crate) const PREFIX: &str = "/chat/";

/// Longest room name, in bytes.
pub(crate) const MAX_ROOM: usize = 64;

/// Longest display name, in characters.
pub(crate) const MAX_NAME: usize = 32;

/// The room named by a request path (`/chat/lobby` → `lobby`), when it is a valid room name: 1 to 64
/// ASCII letters, digits, `-`, `_` or `.`.
pub(crate) fn room_of(path: &str) -> Option<&str> {
    let room = path.strip_prefix(PREFIX)?;
    let valid = !room.is_empty()
        && room.len() <= MAX_ROOM
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    valid.then_some(room)
}

/// Decodes `application/x-www-form-urlencoded` text (`%XX` and `+`); invalid escapes are kept as they
/// are, invalid UTF-8 is replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of parameter `key` in a query string, decoded.
pub(crate) fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// A display name made presentable: control characters dropped, whitespace runs folded to one space,
/// trimmed, cut to [`MAX_NAME`] characters; `None` when nothing is left.
pub(crate) fn clean_name(raw: &str) -> Option<String> {
    let mut name = String::new();
    for word in raw.split_whitespace() {
        let word: String = word.chars().filter(|c| !c.is_control()).collect();
        if word.is_empty() {
            continue;
        }
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(&word);
    }
    let name: String = name.chars().take(MAX_NAME).collect();
    let name = name.trim_end().to_owned();
    (!name.is_empty()).then_some(name)
}

/// One room's members (name by connection id, as `ConnId`'s `Display` writes it) and its presence
/// version, bumped on every join and leave.
#[derive(Default, Debug)]
struct Room {
    version: u64,
    members: BTreeMap<String, String>,
}

impl Room {
    /// `name`, or `name-2`, `name-3`, ... : the first that no member uses.
    fn unique_name(&self, name: &str) -> String {
        let taken = |n: &str| self.members.values().any(|m| m == n);
        if !taken(name) {
            return name.to_owned();
        }
        (2u64..).map(|i| format!("{name}-{i}")).find(|n| !taken(n)).expect("some suffix is free")
    }

    fn members_json(&self) -> Value {
        Value::Array(self.members.iter().map(|(id, name)| member_json(id, name)).collect())
    }
}

fn member_json(id: &str, name: &str) -> Value {
    json!({ "id": id, "name": name })
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Every room of this process. Shared by the handlers of every reactor thread.
#[derive(Default, Debug)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
    guests: std::sync::atomic::AtomicU64,
}

impl Rooms {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Room>) -> R) -> R {
        f(&mut self.rooms.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds a member; returns its (unique) name and the welcome and join events.
    fn join(&self, room: &str, id: &str, node: Option<&str>, wanted: Option<String>) -> (String, Value, Value) {
        let wanted = wanted.unwrap_or_else(|| {
            let n = self.guests.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            format!("guest-{n}")
        });
        self.with(|rooms| {
            let r = rooms.entry(room.to_owned()).or_default();
            let name = r.unique_name(&wanted);
            r.members.insert(id.to_owned(), name.clone());
            r.version += 1;
            let mut welcome = json!({
                "type": "welcome",
                "room": room,
                "you": member_json(id, &name),
                "members": r.members_json(),
                "version": r.version,
            });
            let mut join = json!({
                "type": "join",
                "room": room,
                "member": member_json(id, &name),
                "count": r.members.len(),
                "version": r.version,
            });
            if let Some(node) = node {
                welcome["node"] = node.into();
                join["node"] = node.into();
            }
            (name, welcome, join)
        })
    }

    /// Removes a member; returns the leave event (`None` if it was not there).
    fn leave(&self, room: &str, id: &str, node: Option<&str>) -> Option<Value> {
        self.with(|rooms| {
            let r = rooms.get_mut(room)?;
            let name = r.members.remove(id)?;
            r.version += 1;
            let mut event = json!({
                "type": "leave",
                "room": room,
                "member": member_json(id, &name),
                "count": r.members.len(),
                "version": r.version,
            });
            if let Some(node) = node {
                event["node"] = node.into();
            }
            if r.members.is_empty() {
                rooms.remove(room);
            }
            Some(event)
        })
    }

    /// The members of `room` (names, by connection id order).
    #[cfg(test)]
    fn names(&self, room: &str) -> Vec<String> {
        self.with(|rooms| rooms.get(room).map(|r| r.members.values().cloned().collect()).unwrap_or_default())
    }
}

/// The handler of every connection in chat mode.
pub(crate) enum ChatConn {
    /// A member of a room (`/chat/ROOM`).
    Member(Member),
    /// Any path outside `/chat/`: echo.
    Echo,
    /// `/chat/` with a bad room name: closed with 1008 and this reason as soon as it opens.
    Refused(&'static str),
}

/// One room member.
pub(crate) struct Member {
    rooms: Arc<Rooms>,
    room: String,
    wanted: Option<String>,
    name: String,
    max_text: usize,
    joined: bool,
    /// The connection id as members see it (with the node's tag when there is a broker).
    id: String,
    /// The node's tag (the first 8 hex digits of its broker id) when there is a broker.
    node: Option<String>,
}

/// The node's tag, with a broker: the first 8 hex digits of its broker node id.
fn node_tag(ctx: &Ctx<'_>) -> Option<String> {
    ctx.handle().broker_node().map(|node| format!("{:08x}", node >> 32))
}

impl ChatConn {
    /// The handler for one upgrade request.
    pub(crate) fn new(rooms: &Arc<Rooms>, args: &ChatArgs, request: &UpgradeRequest) -> Self {
        if !request.path.starts_with(PREFIX) && request.path != "/chat" {
            return Self::Echo;
        }
        match room_of(&request.path) {
            Some(room) => Self::Member(Member {
                rooms: rooms.clone(),
                room: room.to_owned(),
                wanted: query_param(request.query.as_deref(), "name").as_deref().and_then(clean_name),
                name: String::new(),
                max_text: args.chat_max_text as usize,
                joined: false,
                id: String::new(),
                node: None,
            }),
            None => Self::Refused("room names are 1-64 letters, digits, '-', '_' or '.': /chat/ROOM"),
        }
    }
}

fn error_event(error: &str) -> String {
    json!({ "type": "error", "error": error }).to_string()
}

impl Handler for ChatConn {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Self::Member(m) => {
                m.node = node_tag(ctx);
                m.id = match &m.node {
                    Some(node) => format!("{node}:{}", ctx.id()),
                    None => ctx.id().to_string(),
                };
                let (name, welcome, join) = m.rooms.join(&m.room, &m.id, m.node.as_deref(), m.wanted.take());
                m.name = name;
                m.joined = true;
                let _ = ctx.send_text(&welcome.to_string());
                ctx.subscribe(&m.room);
                ctx.publish_text(&m.room, &join.to_string());
            }
            Self::Echo => {}
            Self::Refused(reason) => {
                let _ = ctx.close(CloseCode::POLICY_VIOLATION, reason);
            }
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message<'_>) {
        match (self, message) {
            (Self::Member(m), Message::Text(text)) => {
                if text.trim().is_empty() {
                    let _ = ctx.send_text(&error_event("empty message"));
                } else if text.len() > m.max_text {
                    let _ = ctx.send_text(&error_event(&format!("message longer than {} bytes", m.max_text)));
                } else {
                    let event = json!({
                        "type": "message",
                        "room": m.room,
                        "from": member_json(&m.id, &m.name),
                        "text": text,
                        "ts": unix_millis(),
                    });
                    ctx.publish_text(&m.room, &event.to_string());
                }
            }
            (Self::Member(_), Message::Binary(_)) => {
                let _ = ctx.send_text(&error_event("chat messages are text"));
            }
            (Self::Echo, Message::Text(text)) => {
                let _ = ctx.send_text(text);
            }
            (Self::Echo, Message::Binary(data)) => {
                let _ = ctx.send_binary(data);
            }
            (Self::Refused(_), _) => {}
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, _code: CloseCode, _reason: &str) {
        if let Self::Member(m) = self {
            if std::mem::take(&mut m.joined) {
                if let Some(leave) = m.rooms.leave(&m.room, &m.id, m.node.as_deref()) {
                    ctx.publish_text(&m.room, &leave.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert_eq!(room_of("/chat/lobby"), Some("lobby"));
        assert_eq!(room_of("/chat/a-b_c.1"), Some("a-b_c.1"));
        assert_eq!(room_of("/chat/"), None);
        assert_eq!(room_of("/chat"), None);
        assert_eq!(room_of("/chat/a/b"), None);
        assert_eq!(room_of("/chat/caf%C3%A9"), None);
        assert_eq!(room_of(&format!("/chat/{}", "r".repeat(MAX_ROOM))).map(str::len), Some(MAX_ROOM));
        assert_eq!(room_of(&format!("/chat/{}", "r".repeat(MAX_ROOM + 1))), None);
        assert_eq!(room_of("/other/lobby"), None);
    }

    #[test]
    fn names_come_decoded_and_cleaned() {
        assert_eq!(percent_decode("Ren%C3%A9e+B"), "Renée B");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(query_param(Some("x=1&name=al%20ice"), "name").as_deref(), Some("al ice"));
        assert_eq!(query_param(Some("x=1"), "name"), None);
        assert_eq!(query_param(None, "name"), None);
        assert_eq!(clean_name("  al \t\u{7} ice  ").as_deref(), Some("al ice"));
        assert_eq!(clean_name(" \u{1b} ").as_deref(), None);
        assert_eq!(clean_name(&"x".repeat(100)).map(|n| n.chars().count()), Some(MAX_NAME));
    }

    #[test]
    fn presence_versions_grow_and_names_stay_unique() {
        let rooms = Rooms::default();
        let (a, b, c) = ("0:1.1", "1:1.1", "0:2.1");
        let (name_a, welcome_a, _) = rooms.join("r", a, None, Some("al".into()));
        let (name_b, welcome_b, join_b) = rooms.join("r", b, Some("3f2a9c1e"), Some("al".into()));
        let (name_c, _, _) = rooms.join("r", c, None, None);
        assert_eq!((name_a.as_str(), name_b.as_str()), ("al", "al-2"));
        assert!(name_c.starts_with("guest-"), "{name_c}");
        assert_eq!(welcome_a["version"], 1);
        assert_eq!(welcome_b["version"], 2);
        assert_eq!(welcome_b["members"].as_array().map(Vec::len), Some(2));
        assert_eq!((join_b["type"].as_str(), join_b["count"].as_u64()), (Some("join"), Some(2)));
        assert_eq!((welcome_b["node"].as_str(), join_b["node"].as_str()), (Some("3f2a9c1e"), Some("3f2a9c1e")));
        assert!(welcome_a.get("node").is_none(), "no node tag without a broker");
        let leave = rooms.leave("r", a, None).expect("a was there");
        assert_eq!((leave["version"].as_u64(), leave["count"].as_u64()), (Some(4), Some(2)));
        assert_eq!(leave["member"]["name"], "al");
        assert!(rooms.leave("r", a, None).is_none(), "a second leave is not an event");
        let mut names = rooms.names("r");
        names.sort();
        assert_eq!(names, vec!["al-2".to_owned(), name_c]);
        rooms.leave("r", b, None);
        rooms.leave("r", c, None);
        assert!(rooms.with(|r| r.is_empty()), "an empty room is forgotten");
    }
}
