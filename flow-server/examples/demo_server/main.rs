//! A flow server with the demo workflows (`place_order`, `approve_order`,
//! `approve_by_link`) on a journal file.
//!
//! ```text
//! cargo run -p flow-server --example demo_server               # 127.0.0.1:8080, no token
//! cargo run -p flow-server --example demo_server -- --addr 0.0.0.0:8080 --token "$TOKEN"
//! ```
//! Options: `--db PATH` (default `flow-server-demo.redb`), `--addr HOST:PORT`, `--token
//! TOKEN` (or the `FLOW_API_TOKEN` variable), `--generate-token` (make one and print it),
//! `--open` (serve off loopback without a token), `--fresh` (delete the journal first),
//! `--samples` (start a few runs for the web console to show: orders that ship, one
//! refunded, approvals waiting for their signal).
//! The README's "Server" section has a curl session against it. Ctrl-C stops it cleanly.

mod workflows;

use flow::Engine;
use flow_server::{generate_token, Server, ServerOptions};

struct Args {
    db: String,
    options: ServerOptions,
    fresh: bool,
    samples: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: "flow-server-demo.redb".into(),
        options: ServerOptions {
            token: std::env::var("FLOW_API_TOKEN").ok(),
            ..ServerOptions::default()
        },
        fresh: false,
        samples: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--db" => args.db = it.next().ok_or("--db needs a path")?,
            "--addr" => {
                let addr = it.next().ok_or("--addr needs HOST:PORT")?;
                args.options.addr = addr
                    .parse()
                    .map_err(|e| format!("--addr: `{addr}` is not HOST:PORT ({e})"))?;
            }
            "--token" => args.options.token = Some(it.next().ok_or("--token needs a value")?),
            "--generate-token" => {
                let token = generate_token().map_err(|e| e.to_string())?;
                println!("API token (send as `Authorization: Bearer TOKEN`): {token}");
                args.options.token = Some(token);
            }
            "--open" => args.options.allow_open = true,
            "--fresh" => args.fresh = true,
            "--samples" => args.samples = true,
            "-h" | "--help" => {
                return Err(
                    "usage: demo_server [--db PATH] [--addr HOST:PORT] [--token TOKEN | \
                     --generate-token] [--open] [--fresh] [--samples]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument `{other}`; try --help")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = args.options.check() {
        eprintln!("{e}");
        std::process::exit(2);
    }
    if args.fresh {
        if let Err(e) = Engine::remove_journal(&args.db) {
            eprintln!("could not delete {}: {e}", args.db);
            std::process::exit(1);
        }
    }
    let engine = match workflows::builder().open(&args.db).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.db);
            std::process::exit(1);
        }
    };
    let server = match Server::bind(engine.clone(), args.options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let url = format!("http://{}", server.local_addr());
    let _ = workflows::PUBLIC_URL.set(url.clone());
    if args.samples {
        if let Err(e) = workflows::start_samples(&engine).await {
            eprintln!("could not start the sample runs: {e}");
        }
    }
    println!(
        "flow server on {url} (journal {}); web console at {url}/, OpenAPI at \
         {url}/v1/openapi.json",
        args.db
    );
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = server.run_until(stop).await {
        eprintln!("the server failed: {e}");
    }
    engine.shutdown().await;
    println!("stopped; the journal is closed");
}
