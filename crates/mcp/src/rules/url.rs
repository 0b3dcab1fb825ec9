//! `url` rules: a plain `http(s)` URL whose host and port are on the rule's allowlist.

use portcullis_netpolicy::host::Host;
use portcullis_netpolicy::rules::{RuleSet, registrable};
use portcullis_netpolicy::{TargetRequest, parse_target};

/// A plain `http(s)` URL whose host is on the allowlist; an entry without a port admits only
/// 80 and 443, as egress rules do.
pub(super) fn check_url(text: &str, hosts: &RuleSet) -> Result<(), &'static str> {
    let target =
        parse_target(TargetRequest::url(text)).map_err(|_| "the URL is not a plain http(s) URL")?;
    let reg = match &target.host {
        Host::Name(name) => registrable(name, &[]),
        Host::Ip(_) => None,
    };
    let mut on_list = false;
    for entry in hosts.matching(&target.host, reg) {
        on_list = true;
        let port_allowed = match entry.port {
            Some(port) => port == target.port,
            None => matches!(target.port, 80 | 443),
        };
        if port_allowed {
            return Ok(());
        }
    }
    if on_list {
        Err("the URL's port is not allowed for its host (80 and 443 only without a port)")
    } else {
        Err("the URL's host is not on the rule's allowlist")
    }
}
