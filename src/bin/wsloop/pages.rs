//! The HTML pages `wsloop serve` answers as plain HTTP on the WebSocket port (through an
//! [`HttpHandler`]): the dashboard.
//!
//! Every page is one self-contained document: its style sheet, the shared chart code and its own script
//! are embedded in the binary (`include_str!`) and inlined into the HTML; nothing is fetched from
//! elsewhere, and the served pages carry a Content-Security-Policy that would block it if it were.

use wsloop::http::{HttpHandler, HttpRequest, HttpResponse};

const STYLE: &str = include_str!("assets/style.css");
const CHART: &str = include_str!("assets/chart.js");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");

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
pub fn dashboard_page(feed_path: &str) -> String {
    assemble(DASHBOARD_HTML, DASHBOARD_JS).replace("{{FEED_PATH}}", &attribute(feed_path))
}

/// Answers GETs for the dashboard (`PATH` and `PATH/`); everything else falls through to the built-in
/// endpoints.
pub struct Pages {
    dashboard: (String, String),
}

impl Pages {
    /// `page`: the dashboard's path (without a trailing `/`; `""` for the root); `feed`: its feed's path.
    pub fn new(page: &str, feed: &str) -> Self {
        Self { dashboard: (page.to_owned(), dashboard_page(feed)) }
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
        let (page, body) = &self.dashboard;
        if path == page.as_str() || path.strip_suffix('/') == Some(page.as_str()) {
            return Some(Self::html(body));
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
        for (name, page) in [("dashboard", dashboard_page("/dashboard/ws"))] {
            assert!(page.starts_with("<!doctype html>"), "{name}");
            assert!(!page.contains("/*STYLE*/") && !page.contains("/*CHART*/") && !page.contains("/*SCRIPT*/"));
            assert!(!page.contains("{{"), "{name}: a placeholder is left");
            for external in ["http://", "https://", "//fonts.", "@import", "<link rel=\"stylesheet\""] {
                assert!(!page.contains(external), "{name} refers to something outside: {external}");
            }
            let scripts = page.matches("<script").count();
            assert_eq!(page.matches("</script>").count(), scripts, "{name}");
            assert!(!page.contains("<script src"), "{name}");
        }
        for asset in [STYLE, CHART, DASHBOARD_JS] {
            assert!(!asset.contains("</script"), "an asset would end its <script> element early");
        }
    }

    #[test]
    fn the_handler_serves_its_paths_only() {
        let pages = Pages::new("/dashboard", "/dashboard/ws");
        let page = pages.handle(&get("/dashboard")).expect("the dashboard");
        assert_eq!(page.status, 200);
        assert!(page.headers.iter().any(|(n, v)| n == "Content-Type" && v.starts_with("text/html")));
        assert!(String::from_utf8_lossy(&page.body).contains("content=\"/dashboard/ws\""));
        assert!(pages.handle(&get("/dashboard/")).is_some());
        assert!(pages.handle(&get("/dashboard/ws")).is_none(), "the feed is a WebSocket route");
        assert!(pages.handle(&get("/metrics")).is_none());
        let root = Pages::new("", "/ws");
        assert!(root.handle(&get("/")).is_some(), "a dashboard at the root");
    }
}
