//! OpenID Connect discovery (`GET /{tenant}/v2.0/.well-known/openid-configuration`) and
//! MSAL instance discovery (`GET /common/discovery/instance`), `microsoft-protocols.md`
//! §1.1. Every URL is built from the emulator's base URL (the configurable authority
//! host) instead of `login.microsoftonline.com`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Segment, resolve_segment};
use crate::aad::json_response;
use crate::emulator::Emulator;
use crate::model::Cloud;

/// `cloud_graph_host_name` (Azure AD Graph) per cloud.
fn aad_graph_host(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Global => "graph.windows.net",
        Cloud::UsGovHigh | Cloud::UsGovDod => "graph.microsoftazure.us",
        Cloud::China => "graph.chinacloudapi.cn",
    }
}

/// The discovery document.
pub async fn openid_configuration(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
) -> Response {
    let segment = match resolve_segment(&emulator, &tenant) {
        Ok(s) => s,
        Err(e) => return e.to_error(true).into_response_at(emulator.now()),
    };
    let base = emulator.base_url();
    let cloud = emulator.read(|m| segment.cloud(m));
    let tid = match segment {
        Segment::Common | Segment::Organizations => "{tenantid}".to_owned(),
        other => other.tenant_id().map(|t| t.to_string()).unwrap_or_default(),
    };
    // The endpoints keep the segment the document was asked for; the issuer names the tenant.
    let seg = match segment {
        Segment::Tenant(id) => id.to_string(),
        other => other.canonical(),
    };
    let region = match segment {
        Segment::Tenant(_) => json!("NA"),
        _ => json!(null),
    };
    let graph = cloud.graph_host();
    let doc = json!({
        "token_endpoint": format!("{base}/{seg}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{seg}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("https://{graph}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{seg}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{seg}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{seg}/oauth2/v2.0/logout"),
        "claims_supported": ["sub","iss","cloud_instance_name","cloud_instance_host_name","cloud_graph_host_name","msgraph_host","aud","exp","iat","auth_time","acr","nonce","preferred_username","name","tid","ver","at_hash","c_hash","email"],
        "kerberos_endpoint": format!("{base}/{seg}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": cloud.instance_name(),
        "cloud_graph_host_name": aad_graph_host(cloud),
        "msgraph_host": graph,
        "rbac_url": "https://pas.windows.net",
    });
    cacheable(json_response(StatusCode::OK, &doc))
}

/// Discovery answers are cacheable for a day, as Microsoft's are.
pub(crate) fn cacheable(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// MSAL instance discovery: the authority host is its own alias.
pub async fn instance(State(emulator): State<Emulator>, Path(tenant): Path<String>) -> Response {
    if !tenant.eq_ignore_ascii_case("common") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let base = emulator.base_url();
    let host = base
        .split_once("://")
        .map_or(base.as_str(), |(_, h)| h)
        .to_owned();
    let doc = json!({
        "tenant_discovery_endpoint": format!("{base}/common/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    });
    cacheable(json_response(StatusCode::OK, &doc))
}
