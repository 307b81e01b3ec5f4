//! `pt launch`: starts N local ranks of a `pt` command with the torchrun environment, forwards
//! SIGINT/SIGTERM to them, and exits non-zero naming the rank that failed first.

use anyhow::Context;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Processes on this node (one per GPU, or several on a CPU machine).
    #[arg(long, default_value_t = 1)]
    nproc_per_node: u64,
    /// Nodes in the run.
    #[arg(long, default_value_t = 1)]
    nnodes: u64,
    /// This node's index (0 hosts the rendezvous store).
    #[arg(long, default_value_t = 0)]
    node_rank: u64,
    /// Address of node 0, reachable from every node.
    #[arg(long, default_value = "127.0.0.1")]
    master_addr: String,
    /// Free TCP port on node 0 for the rendezvous.
    #[arg(long, default_value_t = 29500)]
    master_port: u16,
    /// After one rank fails, seconds the others get to stop on their own before they are killed.
    #[arg(long, default_value_t = 60)]
    grace_s: u64,
    /// The pt command each rank runs, after `--`: e.g. `-- train --recipe r.toml`.
    #[arg(last = true, required = true, value_name = "PT_ARGS")]
    command: Vec<String>,
}

/// The last signal received (0: none); the handler only stores it.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

struct Rank {
    rank: u64,
    child: Child,
    status: Option<ExitStatus>,
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended".to_string(),
    }
}

fn signal_all(ranks: &[Rank], sig: libc::c_int) {
    for r in ranks.iter().filter(|r| r.status.is_none()) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(r.child.id() as libc::pid_t, sig) };
    }
}

/// Rank 0 of this node will serve the rendezvous store on `port`: a port another job holds
/// would make the ranks meet that job's store and fail only after the timeout.
fn port_is_free(addr: &str, port: u16) -> anyhow::Result<()> {
    let bind_addr = if addr == "localhost" { "127.0.0.1" } else { addr };
    match std::net::TcpListener::bind((bind_addr, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "--master-port {port} is in use on {addr} (another pt launch or torchrun?): stop it, or pass another --master-port"
        ),
        // Not an address of this machine (a name, another interface): rank 0's store finds out.
        Err(_) => Ok(()),
    }
}

/// What a rank wrote into `dir` on giving up: the rank that stopped making progress, and a
/// sentence saying so.
fn stalled_rank(dir: &std::path::Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(dir.join(pt_core::dist::STALLED_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let rank: u64 = parts.next()?.parse().ok()?;
    let message = match parts.next().filter(|s| *s != "-") {
        Some(step) => format!("rank {rank} stopped making progress (no heartbeat since step {step})"),
        None => format!("rank {rank} stopped making progress (the store it serves does not answer)"),
    };
    Some((rank, message))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.nproc_per_node == 0 || args.nnodes == 0 {
        anyhow::bail!("--nproc-per-node and --nnodes must be at least 1");
    }
    if args.node_rank >= args.nnodes {
        anyhow::bail!("--node-rank {} must be below --nnodes {}", args.node_rank, args.nnodes);
    }
    if args.command.first().map(String::as_str) == Some("launch") {
        anyhow::bail!(
            "pt launch -- launch …: the command after `--` is what each rank runs, e.g. `-- train --recipe r.toml`"
        );
    }
    if args.node_rank == 0 {
        port_is_free(&args.master_addr, args.master_port)?;
    }
    // Where a rank that gives up waiting names the rank that stopped making progress.
    let verdicts = tempfile::Builder::new().prefix("pt-launch-").tempdir().context("creating a temporary directory")?;
    let world = args.nproc_per_node * args.nnodes;
    // pt-engine itself: the launcher already put libtorch on LD_LIBRARY_PATH for us.
    let exe = std::env::current_exe().context("locating the pt binary")?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only does an atomic store. A signal the parent ignores (nohup)
        // stays ignored.
        unsafe {
            if libc::signal(sig, on_signal as *const () as libc::sighandler_t) == libc::SIG_IGN {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
    }
    let mut ranks = Vec::new();
    for local in 0..args.nproc_per_node {
        let rank = args.node_rank * args.nproc_per_node + local;
        let mut cmd = Command::new(&exe);
        cmd.arg0("pt")
            .args(&args.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_WORLD_SIZE", args.nproc_per_node.to_string())
            .env("GROUP_RANK", args.node_rank.to_string())
            .env("MASTER_ADDR", &args.master_addr)
            .env("MASTER_PORT", args.master_port.to_string())
            .env(pt_core::dist::LAUNCH_DIR_ENV, verdicts.path());
        // Children get the signals from us, not from the terminal's process group, so one
        // Ctrl-C reaches each rank exactly once.
        cmd.process_group(0);
        // A rank never outlives the launcher (killed with it, as under torchrun).
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting rank {rank} ({})", exe.display()))?;
        ranks.push(Rank { rank, child, status: None });
    }
    errln!(
        "pt launch: ranks {}..{} of {world} started (node {} of {}, rendezvous {}:{})",
        ranks[0].rank,
        ranks[ranks.len() - 1].rank,
        args.node_rank,
        args.nnodes,
        args.master_addr,
        args.master_port
    );
    let mut first_failure: Option<(u64, ExitStatus)> = None;
    // A rank named as stalled gets no grace: it is not running to use it.
    let mut stalled_rank_to_kill: Option<u64> = None;
    let mut failed_at: Option<Instant> = None;
    let mut forwarded = 0;
    let mut killed = false;
    loop {
        for r in ranks.iter_mut().filter(|r| r.status.is_none()) {
            if let Some(status) = r.child.try_wait().with_context(|| format!("waiting for rank {}", r.rank))? {
                r.status = Some(status);
                if !status.success() && first_failure.is_none() {
                    errln!("pt launch: rank {} {}", r.rank, describe(status));
                    if let Some((stalled, message)) = stalled_rank(verdicts.path()) {
                        errln!("pt launch: {message}");
                        stalled_rank_to_kill = Some(stalled);
                    }
                    first_failure = Some((r.rank, status));
                    failed_at = Some(Instant::now());
                }
            }
        }
        if let Some(stalled) = stalled_rank_to_kill.take() {
            if let Some(r) = ranks.iter().find(|r| r.rank == stalled && r.status.is_none()) {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGKILL) };
            }
        }
        if ranks.iter().all(|r| r.status.is_some()) {
            break;
        }
        let sig = SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            forwarded += 1;
            // First signal: passed on (ranks finish the step, save, stop); second: kill.
            signal_all(&ranks, if forwarded == 1 { sig } else { libc::SIGKILL });
        }
        if let (Some(t), false) = (failed_at, killed) {
            if t.elapsed() > Duration::from_secs(args.grace_s) {
                errln!("pt launch: ranks still running {} s after the failure: killing them", args.grace_s);
                signal_all(&ranks, libc::SIGKILL);
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match first_failure {
        None => Ok(()),
        Some((rank, status)) => {
            let others: Vec<String> = ranks
                .iter()
                .filter(|r| r.rank != rank)
                .filter_map(|r| r.status.filter(|s| !s.success()).map(|s| format!("rank {} {}", r.rank, describe(s))))
                .collect();
            let others = if others.is_empty() { String::new() } else { format!(" (then {})", others.join(", ")) };
            if let Some((_, stalled)) = stalled_rank(verdicts.path()) {
                anyhow::bail!("{stalled}: rank {rank} gave up waiting for it and {}{others}", describe(status));
            }
            anyhow::bail!("rank {rank} failed first: it {}{others}", describe(status))
        }
    }
}
