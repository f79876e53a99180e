//! `apono-quickstart-target`: starts a private sshd (in its own mount + PID namespace, via the
//! test kit) for `scripts/quickstart.sh`, prints its coordinates as shell assignments, then keeps
//! it running until SIGTERM or SIGINT, when it stops it cleanly.

use anyhow::Result;
use apono_testkit::SshServer;
use nix::sys::signal::{SigSet, Signal};

#[allow(clippy::print_stdout)]
fn main() -> Result<()> {
    // Block the signals first so that they are only ever received by `wait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block()?;
    let server = SshServer::start()?;
    println!("TARGET_HOST='{}'", server.host());
    println!("TARGET_PORT='{}'", server.port());
    println!("TARGET_ADMIN='{}'", server.admin_user());
    println!(
        "TARGET_ADMIN_KEY_B64='{}'",
        data_encoding::BASE64.encode(server.admin_private_key().as_bytes())
    );
    println!("TARGET_HOST_KEY='{}'", server.host_public_key().trim());
    println!(
        "TARGET_KNOWN_HOSTS='{}'",
        server.known_hosts_path().display()
    );
    println!("READY=1");
    let _ = signals.wait()?;
    drop(server);
    Ok(())
}
