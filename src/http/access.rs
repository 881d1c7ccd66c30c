//! Who may call what. Every route is registered through [`table`], which gives each its
//! access class, and one middleware ([`authorize`]) decides every request from that table:
//! a route cannot be added without saying who may call it, and a route the table does not
//! know (a method the table does not list for that path) is treated as an action, the
//! strictest class.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::auth::{AuthConfig, Presented};
use super::error::ApiError;
use super::{
    changes, dashboard, fleet, openapi, ops, recommendation_metrics, recommendations, reports,
    runs, workloads, AppState,
};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the answer names no cluster, namespace or workload.
    Public,
    /// Anyone while reads are open; a valid token with `--api-auth-reads`.
    Read,
    /// Always a valid token; with no tokens configured, nobody.
    Action,
}

/// How a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// A JSON error, as every API answer.
    Api,
    /// The login form, for a browser.
    Page,
}

/// One route: method, path pattern (as axum matches it) and who may call it.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// The method.
    pub method: Method,
    /// The path pattern, e.g. `/api/v1/runs/{id}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// How a refusal looks.
    pub surface: Surface,
}

struct Entry {
    spec: RouteSpec,
    handler: MethodRouter<AppState>,
}

fn entry<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    surface: Surface,
    handler: H,
) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Entry {
        spec: RouteSpec {
            method,
            path,
            access,
            surface,
        },
        handler: on(filter, handler),
    }
}

/// The one table: every route the server answers.
fn table() -> Vec<Entry> {
    use Access::{Action, Public, Read};
    use Surface::{Api, Page};
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const WORKLOAD: &str = "/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}";
    vec![
        entry(GET, "/healthz", Public, Api, ops::healthz),
        // Names clusters only to callers who may read (see `ops::readyz`).
        entry(GET, "/readyz", Public, Api, ops::readyz),
        // Its labels name clusters.
        entry(GET, "/metrics", Read, Api, ops::prometheus_metrics),
        // Every container's numbers, by cluster and namespace.
        entry(
            GET,
            "/metrics/recommendations",
            Read,
            Api,
            recommendation_metrics::recommendation_metrics,
        ),
        // The schema only, the same for every installation.
        entry(
            GET,
            "/api/v1/openapi.json",
            Public,
            Api,
            openapi::openapi_json,
        ),
        entry(
            GET,
            "/api/v1/recommendations",
            Read,
            Api,
            recommendations::list,
        ),
        entry(
            GET,
            "/api/v1/recommendations/{namespace}/{kind}/{name}",
            Read,
            Api,
            recommendations::one_workload,
        ),
        entry(GET, WORKLOAD, Read, Api, workloads::detail),
        entry(
            GET,
            "/api/v1/workloads/{cluster}/{namespace}/{kind}/{name}/patch",
            Read,
            Api,
            workloads::patch,
        ),
        entry(GET, "/api/v1/clusters", Read, Api, fleet::clusters),
        entry(GET, "/api/v1/namespaces", Read, Api, fleet::namespaces),
        entry(GET, "/api/v1/findings", Read, Api, fleet::findings),
        entry(GET, "/api/v1/changes", Read, Api, changes::list),
        entry(GET, "/api/v1/reports", Read, Api, reports::list),
        entry(GET, "/api/v1/reports/latest", Read, Api, reports::latest),
        entry(GET, "/api/v1/reports/{id}", Read, Api, reports::by_id),
        entry(GET, "/api/v1/runs/{id}", Read, Api, runs::run),
        entry(POST, "/api/v1/collect", Action, Api, runs::collect),
        entry(POST, "/api/v1/analyze", Action, Api, runs::analyze),
        entry(GET, "/", Read, Page, dashboard::fleet::page),
        entry(
            GET,
            "/workloads/{cluster}/{namespace}/{kind}/{name}",
            Read,
            Page,
            dashboard::workload::page,
        ),
        // The same bytes for every installation: they reveal nothing.
        entry(GET, "/assets/app.css", Public, Page, dashboard::stylesheet),
        entry(GET, "/assets/app.js", Public, Page, dashboard::script),
        entry(GET, "/login", Public, Page, dashboard::login::form_page),
        entry(POST, "/login", Public, Page, dashboard::login::log_in),
        entry(POST, "/logout", Public, Page, dashboard::login::log_out),
    ]
}

/// Every route of the server, as [`table`] registers them (for tests and docs).
pub fn routes() -> Vec<RouteSpec> {
    table().into_iter().map(|e| e.spec).collect()
}

/// What [`authorize`] needs: the tokens and the table's access classes by path and method.
#[derive(Clone)]
pub struct Gate {
    auth: Arc<AuthConfig>,
    classes: Arc<Classes>,
}

/// Access class and surface by path pattern, then method.
type Classes = HashMap<&'static str, Vec<(Method, Access, Surface)>>;

/// A router holding every route of the table, and the gate that knows their classes.
pub(super) fn register(auth: Arc<AuthConfig>) -> (Router<AppState>, Gate) {
    let mut router = Router::new();
    let mut classes = Classes::new();
    for Entry { spec, handler } in table() {
        router = router.route(spec.path, handler);
        classes
            .entry(spec.path)
            .or_default()
            .push((spec.method, spec.access, spec.surface));
    }
    let gate = Gate {
        auth,
        classes: Arc::new(classes),
    };
    (router, gate)
}

impl Gate {
    fn classify(&self, request: &Request) -> (Access, Surface) {
        let Some(matched) = request.extensions().get::<MatchedPath>() else {
            // The 404 fallback: it only echoes the path that was asked for.
            return (Access::Read, Surface::Api);
        };
        // axum answers HEAD with the GET handler.
        let method = match request.method() {
            &Method::HEAD => Method::GET,
            m => m.clone(),
        };
        self.classes
            .get(matched.as_str())
            .and_then(|by_method| by_method.iter().find(|(m, ..)| *m == method))
            .map(|&(_, access, surface)| (access, surface))
            .unwrap_or((Access::Action, Surface::Api))
    }
}

/// Marks a request whose caller may read (reads are open, or it carries a valid token), so
/// a public route can decide what it may name.
#[derive(Clone, Copy, Debug)]
pub struct MayRead;

/// The middleware: lets a request through to its route or answers the refusal.
pub(super) async fn authorize(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    let (access, surface) = gate.classify(&request);
    match decide(&gate.auth, access, &request) {
        Ok(may_read) => {
            if may_read {
                request.extensions_mut().insert(MayRead);
            }
            next.run(request).await
        }
        Err(refusal) => match surface {
            Surface::Api => refusal.into_response(),
            Surface::Page => {
                let wanted = request.uri().path_and_query().map_or("/", |p| p.as_str());
                dashboard::login::refusal_page(&refusal, wanted)
            }
        },
    }
}

/// `Ok(may_read)` to let the request through, or why not.
fn decide(auth: &AuthConfig, access: Access, request: &Request) -> Result<bool, ApiError> {
    match access {
        Access::Public => Ok(!auth.reads || auth.credential(request.headers()).is_ok()),
        Access::Read if !auth.reads => Ok(true),
        Access::Read => auth.credential(request.headers()).map(|_| true),
        Access::Action => {
            if !auth.has_tokens() {
                return Err(ApiError::Forbidden(
                    "actions are disabled: configure API tokens (RIGHTSIZER_API_TOKENS or --api-token-file)".into(),
                ));
            }
            let presented = auth.credential(request.headers())?;
            if presented == Presented::Cookie && !same_origin(request.headers()) {
                return Err(ApiError::Forbidden(
                    "a session cookie is only accepted from this server's own pages; \
                     send Authorization: Bearer <token> instead"
                        .into(),
                ));
            }
            Ok(true)
        }
    }
}

/// Whether a request came from this server's own pages. A cookie rides along with any
/// request the browser makes, so an action authenticated by the cookie alone must not come
/// from another site. `SameSite=Strict` already keeps browsers from sending it cross-site;
/// this refuses what an older or misbehaving browser lets through.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: the user typed or bookmarked it, no other site involved.
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Non-browser clients, and browsers too old to send Origin on a same-site form.
        return true;
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}
