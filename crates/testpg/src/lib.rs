//! Tests only: a throwaway PostgreSQL server of the test's own, started from
//! Debian's binaries (`/usr/lib/postgresql/*/bin`) in a temporary directory,
//! listening on a free loopback port, and stopped when dropped.
//!
//! Not for production: failures to set it up are test failures, so they
//! panic with the tool's output. Outside CI a machine without PostgreSQL
//! skips the test ([`TempPostgres::start`] returns `None`); with `CI` set in
//! the environment a missing PostgreSQL fails it instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A PostgreSQL server of the test's own, in a temporary directory.
pub struct TempPostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication).
    pub url: String,
}

/// A loopback port nobody listens on right now, for a server a test starts
/// later. Taken below Linux's ephemeral range (32768 and up by default), so
/// the kernel never hands it to another socket (`bind` to port 0, or an
/// outgoing connection) between this call and the server's start; each
/// call in a process tries the next port, from a place that depends on the
/// process id, so two calls (or two test binaries) do not collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(1_009) % COUNT;
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = (FIRST + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port of the range is taken: let the kernel pick one.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TempPostgres {
    /// Starts one, or returns None (outside CI only) when PostgreSQL is not installed.
    pub fn start() -> Option<TempPostgres> {
        TempPostgres::start_configured(None)
    }

    /// Like [`TempPostgres::start`], serving TLS with this certificate and
    /// key (PEM) and refusing every connection over TCP that is not TLS.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<TempPostgres> {
        TempPostgres::start_configured(Some((cert_pem, key_pem)))
    }

    fn start_configured(tls: Option<(&str, &str)>) -> Option<TempPostgres> {
        let Some(bin) = pg_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs PostgreSQL: apt-get install postgresql"
            );
            // Straight to stderr: the test runner does not capture it.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: PostgreSQL is not installed"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pgdata");
        if is_root() {
            // PostgreSQL refuses to run as root.
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres");
        }
        let port = free_port();
        let pg = TempPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _dir: dir,
            data,
            bin,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\n",
            pg.data.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        if let Some((cert, key)) = tls {
            pg.enable_tls(cert, key);
        }
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn enable_tls(&self, cert: &str, key: &str) {
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, text: &str| {
            let path = self.data.join(name);
            std::fs::write(&path, text).unwrap();
            // PostgreSQL refuses a key others can read.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown {name} to postgres");
            }
        };
        write("server.crt", cert);
        write("server.key", key);
        write(
            "pg_hba.conf",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.stdin(Stdio::null());
        c
    }

    fn ctl(&self, args: &[&str]) {
        let log = self.data.parent().unwrap().join("server.log");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fast shutdown: every session is cut.
    pub fn stop(&self) {
        self.ctl(&["stop", "-m", "fast"]);
    }

    /// Runs SQL with `psql` as the superuser; returns what it printed
    /// (unaligned, tuples only). Panics when it fails.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the server again after [`TempPostgres::stop`], same port and data.
    pub fn start_again(&self) {
        self.ctl(&["start"]);
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!((20_000..32_000).contains(&p), "{p}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }
}
