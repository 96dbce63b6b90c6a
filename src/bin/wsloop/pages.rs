//! The HTML pages: the dashboard and the chat page (served by `wsloop serve` as plain HTTP on the
//! WebSocket port, through an [`HttpHandler`]) and the bench report (`wsloop bench --html`).
//!
//! Every page is one self-contained document: its style sheet, the shared chart code and its own script
//! are embedded in the binary (`include_str!`) and inlined into the HTML; nothing is fetched from
//! elsewhere, and the served pages carry a Content-Security-Policy that would block it if it were.

use serde_json::Value;
use wsloop::http::{HttpHandler, HttpRequest, HttpResponse};

const STYLE: &str = include_str!("assets/style.css");
const CHART: &str = include_str!("assets/chart.js");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const CHAT_HTML: &str = include_str!("assets/chat.html");
const CHAT_JS: &str = include_str!("assets/chat.js");
const REPORT_HTML: &str = include_str!("assets/bench-report.html");
const REPORT_JS: &str = include_str!("assets/bench-report.js");

/// What the served pages may load: nothing but their own inline code and WebSockets to their origin.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Fills a page template: `/*STYLE*/`, `/*CHART*/` and `/*SCRIPT*/` become the shared style sheet, the
/// shared chart code and the page's script.
fn assemble(template: &str, script: &str) -> String {
    template.replace("/*STYLE*/", STYLE).replace("/*CHART*/", CHART).replace("/*SCRIPT*/", script)
}

/// Text safe inside an HTML attribute value in double quotes.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The dashboard page, reading its feed from `feed_path`.
pub(crate) fn dashboard_page(feed_path: &str) -> String {
    assemble(DASHBOARD_HTML, DASHBOARD_JS).replace("{{FEED_PATH}}", &attribute(feed_path))
}

/// The chat page (the same for `/chat` and every `/chat/ROOM`: the script reads the room from the URL).
pub(crate) fn chat_page() -> String {
    assemble(CHAT_HTML, CHAT_JS)
}

/// The bench report: the page with `data` embedded as JSON (in a `<script type="application/json">`
/// element; `<` is escaped so no string in it can end that element).
pub(crate) fn bench_report(data: &Value) -> String {
    let json = data.to_string().replace('<', "\\u003c");
    assemble(REPORT_HTML, REPORT_JS).replace("/*DATA*/", &json)
}

/// Answers GETs for the dashboard (`PATH` and `PATH/`) and, in chat mode, the chat page (`/chat`,
/// `/chat/` and `/chat/ANYTHING`); everything else falls through to the built-in endpoints.
pub(crate) struct Pages {
    dashboard: Option<(String, String)>,
    chat: Option<String>,
}

impl Pages {
    /// `dashboard`: the dashboard's page path (without a trailing `/`; `""` for the root) and its feed
    /// path, when it is on. `chat`: whether the chat page is served.
    pub(crate) fn new(dashboard: Option<(&str, &str)>, chat: bool) -> Self {
        Self {
            dashboard: dashboard.map(|(page, feed)| (page.to_owned(), dashboard_page(feed))),
            chat: chat.then(chat_page),
        }
    }

    fn html(body: &str) -> HttpResponse {
        HttpResponse::with_body(200, "text/html; charset=utf-8", body.as_bytes().to_vec())
            .header("Cache-Control", "no-store")
            .header("Content-Security-Policy", CSP)
            .header("X-Content-Type-Options", "nosniff")
            .header("Referrer-Policy", "no-referrer")
    }
}

impl HttpHandler for Pages {
    fn handle(&self, request: &HttpRequest) -> Option<HttpResponse> {
        if request.method != "GET" && request.method != "HEAD" {
            return None;
        }
        let path = request.path.as_str();
        if let Some((page, body)) = &self.dashboard {
            if path == page.as_str() || path.strip_suffix('/') == Some(page.as_str()) {
                return Some(Self::html(body));
            }
        }
        if let Some(body) = &self.chat {
            if path == "/chat" || path.starts_with("/chat/") {
                return Some(Self::html(body));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> HttpRequest {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        wsloop::http::parse_request(raw.as_bytes(), &Default::default()).unwrap().unwrap().0
    }

    #[test]
    fn pages_are_self_contained() {
        for (name, page) in [
            ("dashboard", dashboard_page("/dashboard/ws")),
            ("chat", chat_page()),
            ("report", bench_report(&serde_json::json!({"x": "</script><b>"}))),
        ] {
            assert!(page.starts_with("<!doctype html>"), "{name}");
            assert!(!page.contains("/*STYLE*/") && !page.contains("/*CHART*/") && !page.contains("/*SCRIPT*/"));
            assert!(!page.contains("/*DATA*/") && !page.contains("{{"), "{name}: a placeholder is left");
            for external in ["http://", "https://", "//fonts.", "@import", "<link rel=\"stylesheet\""] {
                assert!(!page.contains(external), "{name} refers to something outside: {external}");
            }
            // One inline script element per page (two for the report: its data and its code).
            let scripts = page.matches("<script").count();
            assert_eq!(page.matches("</script>").count(), scripts, "{name}");
            assert!(!page.contains("<script src"), "{name}");
        }
        for asset in [STYLE, CHART, DASHBOARD_JS, CHAT_JS, REPORT_JS] {
            assert!(!asset.contains("</script"), "an asset would end its <script> element early");
        }
    }

    #[test]
    fn report_data_cannot_end_its_element() {
        let page = bench_report(&serde_json::json!({"url": "ws://x/</script><script>alert(1)</script>"}));
        assert!(!page.contains("</script><script>alert"));
        assert!(page.contains("\\u003c/script>"));
    }

    #[test]
    fn the_handler_serves_its_paths_only() {
        let pages = Pages::new(Some(("/dashboard", "/dashboard/ws")), false);
        let page = pages.handle(&get("/dashboard")).expect("the dashboard");
        assert_eq!(page.status, 200);
        assert!(page.headers.iter().any(|(n, v)| n == "Content-Type" && v.starts_with("text/html")));
        assert!(String::from_utf8_lossy(&page.body).contains("content=\"/dashboard/ws\""));
        assert!(pages.handle(&get("/dashboard/")).is_some());
        assert!(pages.handle(&get("/dashboard/ws")).is_none(), "the feed is a WebSocket route");
        assert!(pages.handle(&get("/chat/lobby")).is_none(), "no chat page outside chat mode");
        assert!(pages.handle(&get("/metrics")).is_none());
        let chat = Pages::new(None, true);
        assert!(chat.handle(&get("/dashboard")).is_none());
        for path in ["/chat", "/chat/", "/chat/lobby"] {
            assert_eq!(chat.handle(&get(path)).map(|r| r.status), Some(200), "{path}");
        }
        assert!(chat.handle(&get("/chatter")).is_none());
        let root = Pages::new(Some(("", "/ws")), false);
        assert!(root.handle(&get("/")).is_some(), "a dashboard at the root");
    }
}
