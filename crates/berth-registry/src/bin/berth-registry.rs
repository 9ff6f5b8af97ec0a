//! `berth-registry`: a registry server of the OCI distribution API, and
//! its garbage collection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use berth_registry::serve::{self, gc, Options, Upstream};

#[derive(Parser, Debug)]
#[command(name = "berth-registry", version, about = "A registry of the OCI distribution API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Serve the registry stored under --root.
    Serve {
        /// Where blobs, manifests and uploads are kept (made 0700).
        #[arg(long)]
        root: PathBuf,
        /// The address to listen on; port 0 takes a free one, printed on start.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        /// Users and their bcrypt passwords (`htpasswd -B`); without it
        /// no one needs to sign in.
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// Who may do what: lines of `<user|*|anonymous> <repository[*]> <pull,push,delete|*>`.
        #[arg(long)]
        acl: Option<PathBuf>,
        /// Bearer tokens from this server's /token, in place of Basic auth.
        #[arg(long)]
        token_auth: bool,
        /// The token endpoint's URL in challenges (default: /token on the
        /// host a request names).
        #[arg(long, requires = "token_auth")]
        realm: Option<String>,
        /// The service named in challenges and tokens.
        #[arg(long, default_value = "berth-registry")]
        service: String,
        /// A PEM certificate chain to serve HTTPS with.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's PEM private key.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Be a pull-through cache of this registry (http:// or https://).
        #[arg(long)]
        proxy: Option<String>,
        /// The user for the upstream; its password is read from the
        /// environment variable BERTH_REGISTRY_PROXY_PASSWORD.
        #[arg(long, requires = "proxy")]
        proxy_username: Option<String>,
        /// Ask clients to push in chunks of at least this many bytes.
        #[arg(long)]
        chunk_min_length: Option<u64>,
    },
    /// Remove blobs no manifest names, and stale uploads (the server
    /// must be stopped).
    Gc {
        #[arg(long)]
        root: PathBuf,
        /// Say what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete manifests no tag reaches first.
        #[arg(long)]
        delete_untagged: bool,
        /// Drop uploads untouched for this many seconds.
        #[arg(long, default_value_t = 86400)]
        upload_age: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(if std::env::var_os("BERTH_REGISTRY_DEBUG").is_some() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    let result = match cli.command {
        Command::Serve {
            root,
            listen,
            htpasswd,
            acl,
            token_auth,
            realm,
            service,
            tls_cert,
            tls_key,
            proxy,
            proxy_username,
            chunk_min_length,
        } => {
            let opts = Options {
                root,
                htpasswd,
                acl,
                token_auth,
                realm,
                service,
                tls: tls_cert.zip(tls_key),
                proxy: proxy.map(|url| Upstream {
                    url,
                    username: proxy_username.unwrap_or_default(),
                    password: std::env::var("BERTH_REGISTRY_PROXY_PASSWORD").unwrap_or_default(),
                }),
                chunk_min_length,
            };
            serve_on(opts, listen)
        }
        Command::Gc { root, dry_run, delete_untagged, upload_age } => {
            let opts = gc::Options { dry_run, delete_untagged, upload_age: Duration::from_secs(upload_age) };
            gc::collect(&root, &opts).map(|r| {
                let verb = if dry_run { "would remove" } else { "removed" };
                for (repo, d) in &r.manifests {
                    println!("{verb} manifest {repo}@{d}");
                }
                for d in &r.blobs {
                    println!("{verb} blob {d}");
                }
                for id in &r.uploads {
                    println!("{verb} upload {id}");
                }
                println!(
                    "{verb} {} manifests, {} blobs ({} bytes), {} uploads",
                    r.manifests.len(),
                    r.blobs.len(),
                    r.bytes,
                    r.uploads.len()
                );
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-registry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve_on(opts: Options, listen: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let ready = serve::Prepared::new(&opts)?;
        // Printed once requests can be answered: a script may wait for it.
        eprintln!("berth-registry: serving {} on {scheme}://{addr}", opts.root.display());
        ready.serve(listener).await;
        Ok(())
    })
}
