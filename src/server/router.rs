//! Maps a request path to the factory that makes a connection's handler.

use std::collections::HashMap;
use std::sync::Arc;

use super::Handler;
use crate::http::HttpHandler;
use crate::proto::handshake::UpgradeRequest;

/// Makes one handler per accepted connection.
pub(crate) type Factory = Arc<dyn Fn(&UpgradeRequest) -> Box<dyn Handler> + Send + Sync>;

/// Exact-path routes plus an optional catch-all (`"*"`).
#[derive(Default)]
pub(crate) struct Router {
    routes: HashMap<String, Factory>,
    fallback: Option<Factory>,
    http: Option<Arc<dyn HttpHandler>>,
}

impl Router {
    pub(crate) fn add(&mut self, path: &str, factory: Factory) {
        if path == "*" {
            self.fallback = Some(factory);
        } else {
            self.routes.insert(path.to_owned(), factory);
        }
    }

    pub(crate) fn route(&self, path: &str) -> Option<&Factory> {
        self.routes.get(path).or(self.fallback.as_ref())
    }

    pub(crate) fn set_http_handler(&mut self, handler: Arc<dyn HttpHandler>) {
        self.http = Some(handler);
    }

    pub(crate) fn http_handler(&self) -> Option<&Arc<dyn HttpHandler>> {
        self.http.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl Handler for Nop {}

    #[test]
    fn exact_routes_win_over_the_catch_all() {
        let mut router = Router::default();
        assert!(router.route("/a").is_none());
        let a: Factory = Arc::new(|_| Box::new(Nop));
        let any: Factory = Arc::new(|_| Box::new(Nop));
        router.add("/a", a.clone());
        assert!(router.route("/b").is_none());
        router.add("*", any.clone());
        assert!(Arc::ptr_eq(router.route("/a").unwrap(), &a));
        assert!(Arc::ptr_eq(router.route("/b").unwrap(), &any));
    }
}
