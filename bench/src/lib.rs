//! Small pieces the harness binaries share: a blocking HTTP/1.1 client, a RESP
//! (Redis) client, `/proc` CPU readings and statistics. Dependency-free on
//! purpose: the load itself comes from wrk, these only set up and check.

pub mod http {
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// One keep-alive connection.
    pub struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    /// A response, reduced to what the harness looks at.
    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: u16,
        /// `name=value` of the first `Set-Cookie`, attributes dropped.
        pub set_cookie: Option<String>,
        pub body: String,
    }

    impl Client {
        pub fn connect(port: u16) -> io::Result<Self> {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(Client {
                stream,
                buf: Vec::with_capacity(4096),
            })
        }

        pub fn request(
            &mut self,
            method: &str,
            path: &str,
            cookie: Option<&str>,
        ) -> io::Result<Response> {
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if let Some(cookie) = cookie {
                req.push_str("Cookie: ");
                req.push_str(cookie);
                req.push_str("\r\n");
            }
            if method == "POST" {
                req.push_str("Content-Length: 0\r\n");
            }
            req.push_str("\r\n");
            self.stream.write_all(req.as_bytes())?;
            self.read_response()
        }

        fn read_response(&mut self) -> io::Result<Response> {
            let head_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                    break pos;
                }
                self.fill()?;
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad status line"))?;
            let mut length = None;
            let mut set_cookie = None;
            for line in lines {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("set-cookie") && set_cookie.is_none() {
                    set_cookie = Some(value.split(';').next().unwrap_or("").to_owned());
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked responses are not supported"));
                }
            }
            let length = length.ok_or_else(|| bad("no content-length"))?;
            let body_start = head_end + 4;
            while self.buf.len() < body_start + length {
                self.fill()?;
            }
            let body =
                String::from_utf8_lossy(&self.buf[body_start..body_start + length]).into_owned();
            self.buf.drain(..body_start + length);
            Ok(Response {
                status,
                set_cookie,
                body,
            })
        }

        fn fill(&mut self) -> io::Result<()> {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
    }
}

pub mod resp {
    //! Just enough RESP2 to FLUSHDB, read INFO and count MONITOR lines.
    use std::io::{self, BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Simple(String),
        Error(String),
        Int(i64),
        Bulk(Option<Vec<u8>>),
        Array(Option<Vec<Value>>),
    }

    impl Value {
        pub fn text(&self) -> String {
            match self {
                Value::Simple(s) | Value::Error(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            }
        }
    }

    pub struct Conn {
        reader: BufReader<TcpStream>,
    }

    impl Conn {
        pub fn connect(port: u16, db: u32) -> io::Result<Self> {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut conn = Conn {
                reader: BufReader::new(stream),
            };
            if db != 0 {
                conn.cmd(&["SELECT", &db.to_string()])?;
            }
            Ok(conn)
        }

        pub fn send(&mut self, args: &[&str]) -> io::Result<()> {
            let mut out = format!("*{}\r\n", args.len());
            for arg in args {
                out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            self.reader.get_mut().write_all(out.as_bytes())
        }

        pub fn cmd(&mut self, args: &[&str]) -> io::Result<Value> {
            self.send(args)?;
            let value = self.read()?;
            if let Value::Error(e) = &value {
                return Err(io::Error::other(format!("{args:?}: {e}")));
            }
            Ok(value)
        }

        pub fn read(&mut self) -> io::Result<Value> {
            let line = self.line()?;
            let (kind, rest) = line.split_at(1);
            Ok(match kind {
                "+" => Value::Simple(rest.to_owned()),
                "-" => Value::Error(rest.to_owned()),
                ":" => Value::Int(rest.parse().map_err(io::Error::other)?),
                "$" => {
                    let len: i64 = rest.parse().map_err(io::Error::other)?;
                    if len < 0 {
                        Value::Bulk(None)
                    } else {
                        let mut data = vec![0u8; len as usize + 2];
                        std::io::Read::read_exact(&mut self.reader, &mut data)?;
                        data.truncate(len as usize);
                        Value::Bulk(Some(data))
                    }
                }
                "*" => {
                    let len: i64 = rest.parse().map_err(io::Error::other)?;
                    if len < 0 {
                        Value::Array(None)
                    } else {
                        let mut items = Vec::with_capacity(len as usize);
                        for _ in 0..len {
                            items.push(self.read()?);
                        }
                        Value::Array(Some(items))
                    }
                }
                _ => return Err(io::Error::other(format!("bad RESP line {line:?}"))),
            })
        }

        fn line(&mut self) -> io::Result<String> {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed"));
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }

        /// A field of `INFO <section>`.
        pub fn info_field(&mut self, section: &str, field: &str) -> io::Result<Option<String>> {
            let text = self.cmd(&["INFO", section])?.text();
            Ok(text.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            }))
        }

        /// Reads MONITOR lines until nothing arrives for `quiet`.
        pub fn drain_lines(&mut self, quiet: Duration) -> io::Result<Vec<String>> {
            self.reader.get_ref().set_read_timeout(Some(quiet))?;
            let mut lines = Vec::new();
            loop {
                match self.line() {
                    Ok(line) => lines.push(line),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                }
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(30)))?;
            Ok(lines)
        }
    }
}

pub mod cpu {
    //! CPU time of a process (all its threads, live and exited) from `/proc`.
    use std::time::Duration;

    fn ticks_per_second() -> u64 {
        static TPS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *TPS.get_or_init(read_ticks_per_second)
    }

    fn read_ticks_per_second() -> u64 {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    }

    /// utime + stime of `pid`.
    pub fn process_time(pid: u32) -> std::io::Result<Duration> {
        process_times(pid).map(|t| t.user + t.system)
    }

    /// A process's CPU time, split as the kernel accounts it.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Times {
        /// utime: the process's own code (and its libraries).
        pub user: Duration,
        /// stime: system calls and the interrupts charged to the process.
        pub system: Duration,
    }

    /// utime and stime of `pid`.
    pub fn process_times(pid: u32) -> std::io::Result<Times> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses: split after the last ')'.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of proc(5); `rest` starts at field 3.
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        let tps = ticks_per_second();
        Ok(Times {
            user: Duration::from_nanos(utime * 1_000_000_000 / tps),
            system: Duration::from_nanos(stime * 1_000_000_000 / tps),
        })
    }
}

pub mod stats {
    pub fn median(values: &[f64]) -> f64 {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        }
    }

    /// The value at quantile `q` (0..=1) of sorted `values` (nearest rank).
    pub fn quantile(sorted: &[f64], q: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

pub mod redis_instance {
    //! The Redis the benchmarks use: a private `redis-server` on a free port
    //! when one can be started (its CPU time is then ours alone), else the
    //! URL in `BENCH_REDIS_URL` (default `redis://127.0.0.1:6379/9`; database
    //! 0 is refused, since the harness FLUSHDBs it).
    use crate::{cpu, resp};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Redis {
        pub port: u16,
        pub db: u32,
        pub pid: u32,
        pub child: Option<Child>,
    }

    impl Redis {
        pub fn start(cpu: usize) -> Redis {
            if let Ok(url) = std::env::var("BENCH_REDIS_URL") {
                return Self::shared(&url);
            }
            let have_server = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !have_server {
                eprintln!("redis-server not found: using redis://127.0.0.1:6379/9");
                return Self::shared("redis://127.0.0.1:6379/9");
            }
            let port = (6390..6490)
                .find(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
                .expect("a free port for Redis");
            let child = Command::new("taskset")
                .args([
                    "-c",
                    &cpu.to_string(),
                    "redis-server",
                    "--port",
                    &port.to_string(),
                ])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "yes", "--loglevel", "warning"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut conn = loop {
                if let Ok(mut c) = resp::Conn::connect(port, 0) {
                    if c.cmd(&["PING"]).is_ok() {
                        break c;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "private redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            let pid = conn
                .info_field("server", "process_id")
                .ok()
                .flatten()
                .and_then(|p| p.parse().ok())
                .expect("redis pid");
            Redis {
                port,
                db: 0,
                pid,
                child: Some(child),
            }
        }

        pub fn shared(url: &str) -> Redis {
            let rest = url.strip_prefix("redis://").expect("a redis:// URL");
            let (hostport, db) = rest.split_once('/').unwrap_or((rest, "0"));
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, "6379"));
            assert!(
                host == "127.0.0.1" || host == "localhost",
                "the harness only targets 127.0.0.1"
            );
            let db: u32 = db.parse().expect("db index");
            assert!(
                db != 0,
                "refusing to FLUSHDB database 0: pick an index of your own"
            );
            let port: u16 = port.parse().expect("port");
            let mut conn = resp::Conn::connect(port, db).expect("connect to Redis");
            let pid = conn
                .info_field("server", "process_id")
                .ok()
                .flatten()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            Redis {
                port,
                db,
                pid,
                child: None,
            }
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/{}", self.port, self.db)
        }

        pub fn flush(&self) {
            let mut conn = resp::Conn::connect(self.port, self.db).expect("connect to Redis");
            conn.cmd(&["FLUSHDB"]).expect("FLUSHDB");
        }

        pub fn cpu(&self) -> Duration {
            if self.pid == 0 {
                return Duration::ZERO;
            }
            cpu::process_time(self.pid).unwrap_or_default()
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                if let Ok(mut c) = resp::Conn::connect(self.port, 0) {
                    let _ = c.send(&["SHUTDOWN", "NOSAVE"]);
                }
                std::thread::sleep(Duration::from_millis(200));
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
