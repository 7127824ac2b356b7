//! TLS on the ledger's and the agent's listeners (rustls, ring provider):
//! certificate chain and key from PEM files, reloaded on SIGHUP without
//! dropping connections.

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The certificate in use, replaced by [`ReloadingCert::reload`].
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds no valid PEM certificates", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .context("the private key type is not supported")?;
    Ok(CertifiedKey::new(chain, signing))
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ReloadingCert>> {
        let current = load(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; on error the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load(&self.cert, &self.key)?;
        *self.current.write().unwrap() = Arc::new(fresh);
        Ok(())
    }

    /// Reloads on every SIGHUP, for as long as the process runs.
    pub fn reload_on_sighup(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let me = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match me.reload() {
                    Ok(()) => tracing::info!(cert = %me.cert.display(), "TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; keeping the old certificate")
                    }
                }
            }
        });
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap().clone())
    }
}

/// A TLS acceptor (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN). With
/// `client_ca`, client certificates issued by that CA are verified (mutual
/// TLS); clients without one still connect and use bearer tokens.
pub fn acceptor(cert: Arc<ReloadingCert>, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots
                    .add(c.with_context(|| format!("{} holds bad PEM", path.display()))?)
                    .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("{} holds no CA certificate", path.display());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS until `shutdown`, then lets open requests finish (10 s at most).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_connections(listener, router, Some(acceptor), shutdown).await
}

/// Serves plain HTTP (no TLS) the way [`serve`] serves TLS: the same
/// connection settings and graceful shutdown.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_connections(listener, router, None, shutdown).await
}

/// Most bytes hyper buffers per HTTP/1 connection (its default is about
/// 400 KiB, grown while a body streams in). Thousands of connections
/// pushing bodies would otherwise hold hundreds of MiB in read buffers
/// alone, outside admission control's budget (measured: 870 MiB at 4,096
/// connections, docs/performance.md). Headers must fit in it.
pub const MAX_CONNECTION_BUFFER: usize = 8 << 10;

/// How every connection is served, with TLS or without.
pub fn connection_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_CONNECTION_BUFFER);
    builder
}

async fn serve_connections(
    listener: TcpListener,
    router: Router,
    acceptor: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Some(acceptor) = acceptor else {
                        let _ = tcp.set_nodelay(true);
                        let conn = serve_one(TokioIo::new(tcp), router, None);
                        let _ = watcher.watch(conn).await;
                        return;
                    };
                    // A client that never finishes its handshake is dropped.
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    };
                    // A verified client certificate names who is on this connection.
                    let client = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| ClientCert { names: certificate_names(c) });
                    let conn = serve_one(TokioIo::new(tls), router, client);
                    let _ = watcher.watch(conn).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// One connection: `client` is who the TLS layer verified, if anyone; a
/// `ClientCert` a request carries in from anywhere else is removed.
fn serve_one<I>(
    io: TokioIo<I>,
    router: Router,
    client: Option<ClientCert>,
) -> impl hyper_util::server::graceful::GracefulConnection
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::service_fn(
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().remove::<ClientCert>();
            if let Some(c) = &client {
                req.extensions_mut().insert(c.clone());
            }
            let mut router = router.clone();
            async move { tower::Service::call(&mut router, req).await }
        },
    );
    connection_builder()
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .into_owned()
}

/// The identity of a client that presented a certificate the configured CA
/// issued (mutual TLS): its subject common name, then its DNS names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub names: Vec<String>,
}

fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                names.push(d.to_string());
            }
        }
    }
    names
}
