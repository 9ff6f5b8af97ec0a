//! berth-image: the image store from the command line, with `docker`'s
//! verbs for images (load, save, import, export, images, tag, rmi) and
//! what a runtime bundle needs (mount an image's root for a container).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth_image::archive::load;
use berth_image::fixture;
use berth_image::images::ContainerUse;
use berth_image::rootfs::{export_image, import, ImportOptions};
use berth_image::save::save;
use berth_image::{Deleted, Error, ImageStore, Reference, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-image", about = "berth's image store: load, save, import, export, list and mount images")]
struct Cli {
    /// The store's data directory.
    #[arg(long, default_value = "/var/lib/berth")]
    root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load images from a `docker save` archive or an OCI layout tar.
    Load {
        /// The archive; standard input when absent.
        #[arg(short, long)]
        input: Option<PathBuf>,
    },
    /// Save images (names or ids) as `docker save` does.
    Save {
        /// Where to write; standard output when absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Make a one-layer image of a root file system tar (`-` for stdin).
    Import {
        /// A Dockerfile instruction to apply to the config.
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// The history comment.
        #[arg(short, long)]
        message: Option<String>,
        file: String,
        reference: Option<String>,
    },
    /// Write an image's root file system as a tar.
    Export {
        #[arg(short, long)]
        output: Option<PathBuf>,
        image: String,
    },
    /// List images.
    Images,
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Untag and delete images.
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove layers and blobs no image or container layer uses.
    Prune,
    /// Write a deterministic test image, made from busybox-static, as a
    /// `docker save` archive.
    Fixture {
        /// The static busybox binary.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Four layers with a whiteout and an opaque directory, not one.
        #[arg(long)]
        layered: bool,
        #[arg(short, long)]
        output: PathBuf,
        /// The name in the archive.
        #[arg(default_value = "busybox:latest")]
        name: String,
    },
    /// Make the writable layer of container ID over an image and mount its
    /// root; prints the mounted path.
    Mount { image: String, id: String },
    /// Unmount and remove the writable layer of container ID.
    Unmount { id: String },
}

fn output(path: Option<&Path>) -> Result<Box<dyn Write + Send>> {
    match path {
        Some(p) => {
            Ok(Box::new(io::BufWriter::new(File::create(p).map_err(Error::io(format!("create {}", p.display())))?)))
        }
        None if io::stdout().is_terminal() => {
            Err(Error::Invalid("cowardly refusing to write an archive to a terminal; use -o".into()))
        }
        None => Ok(Box::new(io::BufWriter::new(io::stdout()))),
    }
}

fn reference(s: &str) -> Result<Reference> {
    Ok(Reference::parse(s)?)
}

/// `load` reads an archive in place; a stream is first spooled to a file
/// in the store.
fn load_cmd(store: &ImageStore, root: &Path, input: Option<&Path>) -> Result<()> {
    let spool;
    let path = match input {
        Some(p) => p,
        None => {
            let tmp = root.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(Error::io(format!("create {}", tmp.display())))?;
            spool = tmp.join(format!("load-{}.tar", std::process::id()));
            let mut f = File::create(&spool).map_err(Error::io("create spool file"))?;
            let copied = io::copy(&mut io::stdin().lock(), &mut f);
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&spool);
                return Err(Error::Io { what: "read the archive from stdin".into(), source: e });
            }
            &spool
        }
    };
    let loaded = load(store, path);
    if input.is_none() {
        let _ = std::fs::remove_file(path);
    }
    for img in loaded? {
        if img.names.is_empty() {
            println!("Loaded image ID: {}", img.id);
        }
        for n in img.names {
            println!("Loaded image: {}", n.familiar());
        }
    }
    Ok(())
}

fn images_cmd(store: &ImageStore) -> Result<()> {
    println!("{:<30} {:<12} {:<14} {:<22} {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
    let all = store.names()?;
    for rec in store.list()? {
        let cfg = store.config(&rec.id)?;
        let size: u64 = match &rec.top_layer {
            Some(t) => store.layers.chain(t)?.iter().map(|l| l.size).sum(),
            None => 0,
        };
        let created = cfg.created.unwrap_or_default();
        let names: Vec<&Reference> =
            all.iter().filter(|(r, id)| *id == rec.id && r.tag().is_some()).map(|(r, _)| r).collect();
        let rows: Vec<(String, String)> = if names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            names.iter().map(|r| (r.familiar_name(), r.tag().unwrap_or_default().to_owned())).collect()
        };
        for (repo, tag) in rows {
            println!("{repo:<30} {tag:<12} {:<14} {created:<22} {:>9.1}MB", rec.id.short(), size as f64 / 1e6);
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    if let Cmd::Fixture { busybox, layered, output, name } = &cli.cmd {
        let img = if *layered { fixture::layered(busybox)? } else { fixture::busybox(busybox)? };
        let f = File::create(output).map_err(Error::io(format!("create {}", output.display())))?;
        return fixture::write_archive(&[(&img, &reference(name)?)], io::BufWriter::new(f));
    }
    let store = ImageStore::open(&cli.root)?;
    match cli.cmd {
        Cmd::Load { input } => load_cmd(&store, &cli.root, input.as_deref()),
        Cmd::Save { output: o, images } => {
            let names: Vec<&str> = images.iter().map(String::as_str).collect();
            save(&store, &names, output(o.as_deref())?)
        }
        Cmd::Import { change, message, file, reference: r } => {
            let opts = ImportOptions {
                changes: change,
                message,
                source: file.clone(),
                tag: r.as_deref().map(reference).transpose()?,
            };
            let rec = if file == "-" {
                import(&store, io::stdin().lock(), &opts)?
            } else {
                import(&store, File::open(&file).map_err(Error::io(format!("open {file}")))?, &opts)?
            };
            println!("{}", rec.id);
            Ok(())
        }
        Cmd::Export { output: o, image } => export_image(&store, &image, output(o.as_deref())?),
        Cmd::Images => images_cmd(&store),
        Cmd::Tag { source, target } => store.tag(&reference(&target)?, &store.resolve(&source)?),
        Cmd::Rmi { force, images } => {
            // A container layer over the image's top is a container using
            // it; running while its root is mounted.
            let containers = store.layers.list_rw()?;
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for name in images {
                let deleted = store.delete(&name, force, |id| {
                    let top = store.get(id).ok().flatten()?.top_layer?;
                    let rw = containers.iter().find(|c| c.parent.as_ref() == Some(&top))?;
                    let merged = store.layers.mount_of(rw).ok()?.target;
                    let running = mounts.lines().any(|l| l.split(' ').nth(4) == Some(&*merged.to_string_lossy()));
                    Some(ContainerUse { id: rw.id.clone(), running })
                })?;
                for d in deleted {
                    match d {
                        Deleted::Untagged(n) => println!("Untagged: {n}"),
                        Deleted::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Ok(())
        }
        Cmd::Prune => {
            let layers = store.collect_layers()?;
            let blobs = store.prune_blobs()?;
            println!("Removed {} layers and {} blobs", layers.len(), blobs.len());
            Ok(())
        }
        Cmd::Mount { image, id } => {
            let rec = store
                .get(&store.resolve(&image)?)?
                .ok_or_else(|| Error::NotFound(format!("No such image: {image}")))?;
            let rw = store.layers.create_rw(&id, rec.top_layer.as_ref())?;
            let m = store.layers.mount_of(&rw)?;
            if let Err(e) = m.mount() {
                let _ = store.layers.remove_rw(&rw);
                return Err(e);
            }
            println!("{}", m.target.display());
            Ok(())
        }
        Cmd::Unmount { id } => {
            let rw = store
                .layers
                .list_rw()?
                .into_iter()
                .find(|r| r.id == id)
                .ok_or_else(|| Error::NotFound(format!("No such container layer: {id}")))?;
            store.layers.mount_of(&rw)?.unmount()?;
            store.layers.remove_rw(&rw)
        }
        Cmd::Fixture { .. } => Ok(()),
    }
}

#[allow(clippy::exit)] // the binary owns the exit code
fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}
