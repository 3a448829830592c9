//! `keycard::ClientAddrResolver::resolve`: the client's address from the
//! peer and, through trusted proxies only, `Forwarded` / `X-Forwarded-For`.
//!
//! Input: the first line is the peer address (`ip` or `ip:port`; anything
//! else means the trusted proxy 10.0.0.1), then header lines `name: value`.
//! Checked: an untrusted peer is the answer whatever the headers say; an
//! answer other than the peer comes from a trusted peer and is an address
//! written in the forwarding headers.
#![no_main]

use http::Extensions;
use keycard::{ClientAddrResolver, PeerAddr};
use keycard_fuzz::{first_line, header_lines};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

fn resolver() -> &'static ClientAddrResolver {
    static RESOLVER: OnceLock<ClientAddrResolver> = OnceLock::new();
    RESOLVER.get_or_init(|| {
        ["10.0.0.0/8", "192.168.0.0/16", "::1/128", "fd00::/8"]
            .into_iter()
            .fold(ClientAddrResolver::default(), |r, net| {
                r.trust(net.parse().expect("net"))
            })
    })
}

fn peer(line: &[u8]) -> SocketAddr {
    let text = std::str::from_utf8(line).unwrap_or("");
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 443)))
        .unwrap_or_else(|_| "10.0.0.1:443".parse().expect("address"))
}

/// Every address written in `text`: each run of address characters, as it
/// is and without a trailing `:port`.
fn written_addresses(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.')) {
        out.extend(run.parse::<IpAddr>());
        if let Some((host, _)) = run.rsplit_once(':') {
            out.extend(host.parse::<IpAddr>());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (peer_line, rest) = first_line(data);
    let peer = peer(peer_line);
    let headers = header_lines(rest);
    let mut extensions = Extensions::new();
    extensions.insert(PeerAddr(peer));
    let resolver = resolver();
    let client = resolver
        .resolve(&extensions, &headers)
        .expect("a peer address gives an answer");
    if !resolver.is_trusted(peer.ip()) {
        assert_eq!(
            client,
            peer.ip(),
            "an untrusted peer's headers were believed"
        );
        return;
    }
    if client != peer.ip() {
        let written: Vec<IpAddr> = ["forwarded", "x-forwarded-for"]
            .iter()
            .flat_map(|name| headers.get_all(*name).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(written_addresses)
            .collect();
        assert!(
            written.contains(&client),
            "{client} is not in the forwarding headers"
        );
    }
    assert_eq!(resolver.resolve(&extensions, &headers), Some(client));
});
