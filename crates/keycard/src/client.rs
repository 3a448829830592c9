//! Who is on the other end: the client's address (through trusted proxies
//! only) and user agent, and binding a session to them.

use http::request::Parts;
use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The peer address of a connection, for servers that do not use axum's
/// `ConnectInfo`: insert it into the request extensions before the session layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Resolves the client's address from the connection, and from `Forwarded` /
/// `X-Forwarded-For` only when the connection comes from a trusted proxy
/// (anyone else could write any address there).
///
/// ```
/// use keycard::ClientAddrResolver;
/// let resolver = ClientAddrResolver::default().trust("10.0.0.0/8".parse().unwrap());
/// assert!(resolver.is_trusted("10.1.2.3".parse().unwrap()));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientAddrResolver {
    trusted: Vec<IpNet>,
}

impl ClientAddrResolver {
    /// Trusts forwarded headers from this network.
    #[must_use]
    pub fn trust(mut self, net: IpNet) -> Self {
        self.trusted.push(net);
        self
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The peer address the server saw, if the request carries it.
    pub fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(addr.ip());
        }
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        None
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy,
    /// the nearest address in the forwarding chain that is not a trusted proxy.
    pub fn resolve(&self, extensions: &http::Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = Self::peer(extensions)?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(headers);
        // Walk from the nearest hop outwards; the first untrusted hop is the
        // client as far as any proxy we trust can vouch.
        let mut client = peer;
        for hop in chain.iter().rev() {
            client = *hop;
            if !self.is_trusted(*hop) {
                break;
            }
        }
        Some(client)
    }
}

/// The addresses of `Forwarded` (RFC 7239) `for=` parameters, or failing that
/// of `X-Forwarded-For`, in order from the original client to the last proxy.
/// Unparseable entries end the chain (fail closed to the nearer hop).
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut chain = Vec::new();
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let for_param = element.split(';').find_map(|param| {
                let (name, value) = param.trim().split_once('=')?;
                name.eq_ignore_ascii_case("for").then_some(value)
            });
            match for_param.and_then(parse_forwarded_node) {
                Some(ip) => chain.push(ip),
                None => chain.clear(),
            }
        }
        return chain;
    }
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for part in value.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => chain.push(ip),
                Err(_) => chain.clear(),
            }
        }
    }
    chain
}

fn parse_forwarded_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => value,
    };
    host.parse().ok()
}

/// How strictly a session is tied to the address it was created from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindIp {
    /// No binding (the default: NAT and mobile networks change addresses).
    #[default]
    Off,
    /// The same /24 (IPv4) or /64 (IPv6) network.
    Subnet,
    /// The same address.
    Exact,
}

impl std::str::FromStr for BindIp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(BindIp::Off),
            "subnet" => Ok(BindIp::Subnet),
            "exact" => Ok(BindIp::Exact),
            _ => Err(format!("`{s}` is not one of off, subnet, exact")),
        }
    }
}

/// What happens when a bound session is used from elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// The session ends (the default).
    #[default]
    Hard,
    /// The session goes on, but the login is no longer fresh: sensitive
    /// actions ask for the password again.
    Soft,
}

/// Session binding settings (OWASP Session Management: "binding the session
/// ID to other user properties").
///
/// ```
/// use keycard::{BindIp, Binding};
/// let binding = Binding { ip: BindIp::Subnet, ..Binding::default() };
/// assert!(binding.ip_matches("192.0.2.7", "192.0.2.200".parse().unwrap()));
/// assert!(!binding.ip_matches("192.0.2.7", "192.0.3.7".parse().unwrap()));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// Address binding.
    pub ip: BindIp,
    /// Also require the same User-Agent.
    pub user_agent: bool,
    /// Hard or soft.
    pub mode: BindMode,
}

impl Binding {
    /// Whether this binding compares nothing (neither address nor User-Agent).
    pub(crate) fn is_off(&self) -> bool {
        self.ip == BindIp::Off && !self.user_agent
    }

    /// Whether a session recorded from `recorded` may be used from `now`.
    pub fn ip_matches(&self, recorded: &str, now: IpAddr) -> bool {
        let Ok(recorded) = recorded.parse::<IpAddr>() else {
            return false;
        };
        match self.ip {
            BindIp::Off => true,
            BindIp::Exact => canonical(recorded) == canonical(now),
            BindIp::Subnet => match (canonical(recorded), canonical(now)) {
                (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
                (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
                _ => false,
            },
        }
    }

    /// Whether the record's client details allow this request's.
    ///
    /// With address binding on, a request whose address is unknown is not
    /// allowed (fail closed: the server was not given the peer address, see
    /// [`PeerAddr`]); a record without an address (made before binding was
    /// turned on) allows any.
    ///
    /// ```
    /// use keycard::{BindIp, Binding, ClientDetails};
    /// let binding = Binding { ip: BindIp::Exact, ..Binding::default() };
    /// let at = |ip: Option<&str>| ClientDetails { ip: ip.map(str::to_owned), user_agent: None };
    /// assert!(binding.allows(&at(Some("192.0.2.1")), &at(Some("192.0.2.1"))));
    /// assert!(!binding.allows(&at(Some("192.0.2.1")), &at(Some("192.0.2.2"))));
    /// assert!(!binding.allows(&at(Some("192.0.2.1")), &at(None)));
    /// assert!(!binding.allows(&at(None), &at(None)));
    /// assert!(binding.allows(&at(None), &at(Some("192.0.2.2"))));
    /// ```
    pub fn allows(&self, recorded: &crate::ClientDetails, now: &crate::ClientDetails) -> bool {
        if self.ip != BindIp::Off {
            match (&recorded.ip, &now.ip) {
                (Some(recorded), Some(current)) => match current.parse() {
                    Ok(current) if self.ip_matches(recorded, current) => {}
                    _ => return false,
                },
                (_, None) => return false,
                (None, Some(_)) => {}
            }
        }
        !self.user_agent || recorded.user_agent == now.user_agent
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The longest User-Agent kept, in characters: enough for any real browser's,
/// and a bound on what one request can make every session record hold.
const MAX_USER_AGENT_CHARS: usize = 512;

/// The client of one request as the layer found it: the resolved address and
/// the `User-Agent` header as sent. They become [`ClientDetails`] text only
/// when something reads them (binding, login, the sessions list, the login
/// log), so the many requests that need neither format no address and copy
/// no header.
///
/// [`ClientDetails`]: crate::ClientDetails
#[derive(Debug)]
pub(crate) struct RequestClient {
    ip: Option<IpAddr>,
    user_agent: Option<http::HeaderValue>,
    details: std::sync::OnceLock<crate::ClientDetails>,
}

impl RequestClient {
    /// Resolves the request's client (the address through trusted proxies only).
    pub(crate) fn from_request(resolver: &ClientAddrResolver, parts: &Parts) -> Self {
        RequestClient {
            ip: resolver.resolve(&parts.extensions, &parts.headers),
            // A `HeaderValue` clone shares the request's buffer: no copy.
            user_agent: parts.headers.get(http::header::USER_AGENT).cloned(),
            details: std::sync::OnceLock::new(),
        }
    }

    /// The client as text: made on the first call, the same after.
    pub(crate) fn details(&self) -> &crate::ClientDetails {
        self.details.get_or_init(|| crate::ClientDetails {
            ip: self.ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.as_ref().map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(MAX_USER_AGENT_CHARS)
                    .collect()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder();
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts.extensions.insert(PeerAddr(peer.parse().unwrap()));
        parts
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let resolver = ClientAddrResolver::default().trust("10.0.0.0/8".parse().unwrap());
        let spoofed = request("203.0.113.9:1", &[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolver.resolve(&spoofed.extensions, &spoofed.headers),
            Some("203.0.113.9".parse().unwrap())
        );
        let proxied = request(
            "10.0.0.1:1",
            &[("x-forwarded-for", "1.2.3.4, 198.51.100.2, 10.0.0.5")],
        );
        assert_eq!(
            resolver.resolve(&proxied.extensions, &proxied.headers),
            Some("198.51.100.2".parse().unwrap())
        );
        let rfc = request(
            "10.0.0.1:1",
            &[("forwarded", "for=\"[2001:db8::1]:80\";proto=https")],
        );
        assert_eq!(
            resolver.resolve(&rfc.extensions, &rfc.headers),
            Some("2001:db8::1".parse().unwrap())
        );
        let v4port = request("10.0.0.1:1", &[("forwarded", "for=192.0.2.60:4711")]);
        assert_eq!(
            resolver.resolve(&v4port.extensions, &v4port.headers),
            Some("192.0.2.60".parse().unwrap())
        );
    }

    #[test]
    fn subnet_binding_compares_networks() {
        let binding = Binding {
            ip: BindIp::Subnet,
            ..Binding::default()
        };
        assert!(binding.ip_matches("2001:db8:1:2::1", "2001:db8:1:2::ffff".parse().unwrap()));
        assert!(!binding.ip_matches("2001:db8:1:2::1", "2001:db8:1:3::1".parse().unwrap()));
        assert!(!binding.ip_matches("garbage", "2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn client_details_are_made_only_when_read() {
        let long_agent = "é".repeat(600);
        let mut parts = request("203.0.113.9:443", &[]);
        parts.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_bytes(long_agent.as_bytes()).unwrap(),
        );
        let client = RequestClient::from_request(&ClientAddrResolver::default(), &parts);
        assert!(client.details.get().is_none(), "nothing formatted up front");
        let details = client.details();
        assert_eq!(details.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(
            details.user_agent.as_deref(),
            Some("é".repeat(MAX_USER_AGENT_CHARS).as_str())
        );
        assert!(std::ptr::eq(details, client.details()), "made once");

        let mut latin1 = request("192.0.2.1:1", &[]);
        latin1.headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_bytes(b"agent \xff").unwrap(),
        );
        let client = RequestClient::from_request(&ClientAddrResolver::default(), &latin1);
        assert_eq!(
            client.details().user_agent.as_deref(),
            Some("agent \u{fffd}")
        );
    }

    #[test]
    fn binding_off_compares_nothing() {
        assert!(Binding::default().is_off());
        let ua_only = Binding {
            user_agent: true,
            ..Binding::default()
        };
        assert!(!ua_only.is_off());
        let subnet = Binding {
            ip: BindIp::Subnet,
            ..Binding::default()
        };
        assert!(!subnet.is_off());
    }
}
