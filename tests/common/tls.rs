//! TLS for tests: a private CA and a certificate for `localhost` it signed
//! (rcgen), written as PEM files the way a self-hoster's would be, and a
//! TLS-terminating proxy (what nginx or Caddy would be in front of Tandem).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA and a `localhost` certificate it signed, as PEM files in a folder.
pub struct TestCa {
    /// The CA's certificate: what a client trusts (`SSL_CERT_FILE`).
    pub ca_file: PathBuf,
    /// The server's certificate and its private key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let t = TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        std::fs::write(&t.ca_file, ca.pem()).unwrap();
        std::fs::write(&t.cert_file, cert.pem()).unwrap();
        std::fs::write(&t.key_file, key.serialize_pem()).unwrap();
        t
    }

    /// A TLS-terminating proxy in front of `upstream` with the `localhost`
    /// certificate; returns its `https://localhost:<port>` URL.
    pub async fn proxy(&self, upstream: SocketAddr) -> String {
        use tokio_rustls::rustls;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        format!("https://localhost:{port}")
    }
}
