//! `portcullis demo`: the gateway with the built-in fixture tool server as its one upstream, a demo
//! agent, and copy-paste commands to list and call tools.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::admin_client::{AdminClient, ServerArgs};
use crate::print_line;

/// The upstream's name: tools appear as `demo.<tool>`.
const UPSTREAM: &str = "demo";
const AGENT: &str = "demo";
const SAMPLE_FILE: &str = "hello.txt";
const SAMPLE_TEXT: &str = "Hello from the Portcullis demo.\n\
This file lies inside the demo's files directory, so the read_file tool may read it.\n";
/// Longest wait for the gateway to listen and for the fixture upstream to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's configuration, data and files (created when missing).
    #[arg(long, default_value = "portcullis-demo")]
    pub dir: PathBuf,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::create(&args.dir)?;
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    std::fs::write(&layout.config, demo_config(&exe, &layout.files)?)
        .with_context(|| format!("cannot write {}", layout.config.display()))?;

    let mut gateway = tokio::process::Command::new(&exe)
        .arg("serve")
        .arg("--config")
        .arg(&layout.config)
        .arg("--data-dir")
        .arg(&layout.data)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the gateway")?;
    let stdout = gateway.stdout.take().context("no gateway stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let http = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            print_line(&line)?;
            let Ok(listening) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if listening.get("event").and_then(serde_json::Value::as_str) == Some("listening") {
                let http = listening.get("http").and_then(serde_json::Value::as_str);
                return http
                    .map(str::to_owned)
                    .context("the listening line has no address");
            }
        }
        bail!("the gateway exited before listening")
    })
    .await
    .context("the gateway did not start in time")??;
    // Keep echoing whatever else the gateway prints.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if print_line(&line).is_err() {
                break;
            }
        }
    });

    let base = format!("http://{http}");
    let admin = AdminClient::connect(&ServerArgs {
        server: Some(base.clone()),
        config: None,
        data_dir: Some(layout.data.clone()),
    })?;
    wait_for_upstream(&admin).await?;
    admin
        .send(
            reqwest::Method::POST,
            "/admin/tools/pin",
            Some(serde_json::json!({})),
        )
        .await
        .context("cannot pin the demo tools")?;
    // A demo agent left by an earlier run is replaced, so the new token is the only one.
    let _ = admin
        .send(
            reqwest::Method::DELETE,
            &format!("/admin/agents/{AGENT}"),
            None,
        )
        .await;
    let created = admin
        .send(
            reqwest::Method::POST,
            "/admin/agents",
            Some(serde_json::json!({
                "id": AGENT,
                "allow": [
                    format!("io:ingress:tools.{UPSTREAM}"),
                    format!("io:egress:tools.{UPSTREAM}"),
                    format!("tools:call:{UPSTREAM}.*"),
                ],
            })),
        )
        .await
        .context("cannot create the demo agent")?;
    let token = created
        .get("token")
        .and_then(serde_json::Value::as_str)
        .context("the gateway answered without a token")?;

    print_line(&instructions(&base, token, &layout))?;
    print_line(
        &serde_json::json!({
            "event": "demo",
            "mcp": format!("{base}/mcp"),
            "agent": AGENT,
            "token": token,
        })
        .to_string(),
    )?;

    // Ctrl-C reaches the gateway too (same process group); a SIGTERM to the demo stops it here.
    tokio::select! {
        status = gateway.wait() => {
            let status = status.context("cannot wait for the gateway")?;
            Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        () = portcullis_gateway::server::shutdown_signal() => {
            let _ = gateway.start_kill();
            let _ = gateway.wait().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where the demo keeps things, all below one directory.
#[derive(Debug)]
struct Layout {
    config: PathBuf,
    data: PathBuf,
    files: PathBuf,
}

impl Layout {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let files = dir.join("files");
        std::fs::create_dir_all(&files)
            .with_context(|| format!("cannot create {}", files.display()))?;
        let sample = files.join(SAMPLE_FILE);
        if !sample.exists() {
            std::fs::write(&sample, SAMPLE_TEXT)
                .with_context(|| format!("cannot write {}", sample.display()))?;
        }
        Ok(Self {
            config: dir.join("portcullis.toml"),
            data: dir.join("data"),
            files,
        })
    }
}

/// The demo's configuration: the fixture server as a stdio upstream, pinned tools, and a path
/// rule that keeps `read_file` inside the files directory.
fn demo_config(exe: &Path, files: &Path) -> anyhow::Result<String> {
    // A JSON string is a valid TOML basic string.
    let quote = |path: &Path| -> anyhow::Result<String> {
        let text = path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        Ok(serde_json::to_string(text)?)
    };
    let (exe, files) = (quote(exe)?, quote(files)?);
    Ok(format!(
        r#"# Written by `portcullis demo` at every start; edit a copy, not this file.

[tools]
prefix = "always"
pin_mode = "strict"

[[tools.rules]]
name = "demo-files"
tools = ["{UPSTREAM}.read_file"]
kind = "path"
arguments = ["path"]
roots = [{files}]

[[upstreams]]
name = "{UPSTREAM}"
version = "{version}"

[upstreams.stdio]
command = {exe}
args = ["fixture-server", "--root", {files}]
"#,
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// Waits until the fixture upstream is up (it starts as a child of the gateway).
async fn wait_for_upstream(admin: &AdminClient) -> anyhow::Result<()> {
    tokio::time::timeout(START_TIMEOUT, async {
        loop {
            let tools = admin
                .send(reqwest::Method::GET, "/admin/tools", None)
                .await?;
            let up = tools
                .get("upstreams")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|upstreams| {
                    upstreams.iter().any(|upstream| {
                        upstream.get("status").and_then(serde_json::Value::as_str) == Some("up")
                    })
                });
            if up {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .context("the demo tool server did not come up in time")?
}

fn instructions(base: &str, token: &str, layout: &Layout) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    format!(
        r#"
Portcullis demo is running.
  gateway   {base}   (MCP endpoint {base}/mcp)
  upstream  `{UPSTREAM}`: the built-in fixture tool server, tools pinned
  files     {files}   (read_file may read only here)
  config    {config}
  data      {data}   (ledger, admin token)

Agent `{AGENT}`, token (shown once):
  {token}

Copy these lines into a bash shell to list and call tools:

TOKEN={token}
URL={base}/mcp
H=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25')
SID=$(curl -s -D - -o /dev/null "${{H[@]}}" "$URL" -d '{init}' | tr -d '\r' | sed -n 's/^mcp-session-id: *//Ip')
mcp() {{ curl -s "${{H[@]}}" -H "Mcp-Session-Id: $SID" "$URL" -d "$1"; echo; }}
mcp '{{"jsonrpc":"2.0","method":"notifications/initialized"}}'
mcp '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'
mcp '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{UPSTREAM}.echo","arguments":{{"message":"hello"}}}}}}'
mcp '{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"{UPSTREAM}.read_file","arguments":{{"path":"{SAMPLE_FILE}"}}}}}}'
mcp '{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{UPSTREAM}.read_file","arguments":{{"path":"../data/admin.token"}}}}}}'

The last call is refused before the tool server sees it. Every decision is in the ledger:
  curl -s -H "Authorization: Bearer $(cat {data}/admin.token)" '{base}/admin/ledger?limit=10'

Press Ctrl-C to stop.
"#,
        files = layout.files.display(),
        config = layout.config.display(),
        data = layout.data.display(),
    )
}
