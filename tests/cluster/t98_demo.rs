//! `banyan demo` as a newcomer runs it: it completes with its live and final summaries and
//! a clean verdict, with and without `--chaos`; and its wallboard, opened in real headless
//! Chromium, shows the queues, agents and cluster and changes by itself as live updates
//! arrive (a screenshot is kept in `target/test-artifacts/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use banyan_harness::wait_until;
use banyan_tests::{banyan_bin, DEADLINE};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// Starts `banyan demo` with `args`; returns the process and its output as it comes.
fn start_demo(args: &[&str]) -> (Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new(banyan_bin())
        .arg("demo")
        .args(["--wallboard", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("banyan demo starts");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Waits for the demo to exit; returns its exit success and everything it printed.
async fn finish(
    mut child: Child,
    mut out: tokio::sync::mpsc::UnboundedReceiver<String>,
    mut seen: Vec<String>,
) -> (bool, String) {
    let status = tokio::time::timeout(Duration::from_secs(240), child.wait())
        .await
        .expect("the demo ends")
        .expect("waiting for the demo");
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), out.recv()).await {
        seen.push(line);
    }
    (status.success(), seen.join("\n"))
}

fn assert_clean_verdict(ok: bool, printed: &str) {
    assert!(ok, "the demo failed:\n{printed}");
    assert!(printed.contains("== The day in figures =="), "{printed}");
    assert!(printed.contains("service level"), "{printed}");
    assert!(printed.contains("time to offer: p50"), "{printed}");
    assert!(
        printed.contains("checker: 0 lost, 0 double-assigned, 0 violations"),
        "{printed}"
    );
    assert!(printed.contains("Stopped every node cleanly"), "{printed}");
    // The live summary printed while it ran.
    assert!(printed.matches("callers,").count() >= 2, "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_the_demo_runs_its_day_with_chaos_and_the_checker_finds_nothing() {
    let (child, out) = start_demo(&["--duration", "30s", "--chaos", "--every", "5s"]);
    let (ok, printed) = finish(child, out, Vec::new()).await;
    assert_clean_verdict(ok, &printed);
    assert!(printed.contains("chaos: stopped the leader"), "{printed}");
    assert!(printed.contains("chaos: restarted node"), "{printed}");
    assert!(
        printed.contains("chaos: cut the emea branch off"),
        "{printed}"
    );
    assert!(
        printed.contains("chaos: healed the emea branch"),
        "{printed}"
    );
}

/// The Chromium to drive: `BANYAN_CHROMIUM`, else `chromium` on the path. Without one the
/// browser test says so plainly and passes, so the test command works on a machine with
/// only a Rust toolchain; with `BANYAN_REQUIRE_CHROMIUM` set (as `.ci/run` does) a missing
/// Chromium fails it instead.
fn chromium() -> Option<String> {
    let program = std::env::var("BANYAN_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return Some(program);
    }
    let advice = format!(
        "the browser test needs Chromium and found no `{program}`: install Debian's \
         `chromium` package (apt-get install chromium) or point BANYAN_CHROMIUM at one"
    );
    assert!(
        std::env::var_os("BANYAN_REQUIRE_CHROMIUM").is_none(),
        "{advice}"
    );
    eprintln!("SKIPPED: {advice}");
    None
}

/// A page of headless Chromium driven over the DevTools protocol.
struct Browser {
    child: Child,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(chromium: &str, url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1600,1000",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromium says where its DevTools listen");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let devtools = format!("127.0.0.1:{port}");
        let page = wait_until("the page target", DEADLINE, || {
            let devtools = devtools.clone();
            async move {
                let body = devtools_get(&devtools, "/json/list").await.ok()?;
                let targets: serde_json::Value = serde_json::from_str(&body).ok()?;
                targets
                    .as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            }
        })
        .await
        .unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(page.as_str())
            .await
            .unwrap();
        Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends a DevTools command and returns its result.
    async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools socket open")
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }
}

/// A GET against Chromium's DevTools HTTP endpoint, which answers HTTP/1.1 only and keeps
/// the connection open: the body is read to its Content-Length.
async fn devtools_get(addr: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("DevTools did not answer"))??;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(body.to_owned());
            }
        }
    }
    Err(std::io::Error::other(
        "DevTools closed the connection early",
    ))
}

const READ_PANELS: &str = r#"JSON.stringify({
    queues: document.getElementById("queue-rows").innerText,
    agents: document.getElementById("agent-rows").innerText,
    members: document.getElementById("member-rows").innerText,
    branches: document.getElementById("branch-rows").innerText,
    leader: document.getElementById("leader").textContent,
    applied: document.getElementById("applied").textContent,
    updates: Number(document.getElementById("updates").textContent),
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_the_wallboard_in_a_real_browser_shows_the_demo_live() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (child, mut out) = start_demo(&["--duration", "25s", "--every", "5s"]);
    let mut seen = Vec::new();
    let url = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = out.recv().await {
            seen.push(line.clone());
            if line.trim_start().starts_with("core node 1") {
                return line.split_whitespace().last().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("the demo prints its wallboard:\n{}", seen.join("\n")));

    let mut browser = Browser::open(&chromium, &url).await;
    let read = |v: serde_json::Value| -> serde_json::Value {
        serde_json::from_str(v.as_str().unwrap_or("{}")).unwrap_or_default()
    };
    // The three panels fill in once the demo has its queues, agents and cluster.
    let mut first = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let panels = read(browser.eval(READ_PANELS).await);
        let queues = panels["queues"].as_str().unwrap_or_default();
        let agents = panels["agents"].as_str().unwrap_or_default();
        let branches = panels["branches"].as_str().unwrap_or_default();
        if ["Billing", "Technical support", "Sales"]
            .iter()
            .all(|q| queues.contains(q))
            && agents.contains("emea")
            && agents.contains("apac")
            && panels["leader"]
                .as_str()
                .is_some_and(|l| l.starts_with("node "))
            && branches.contains("leased")
        {
            first = panels;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !first.is_null(),
        "the wallboard never showed the demo's queues, agents and cluster"
    );
    // A live update changes a number on the screen without a reload.
    let mut later = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        let panels = read(browser.eval(READ_PANELS).await);
        if panels["updates"].as_u64() > first["updates"].as_u64()
            && panels["applied"] != first["applied"]
        {
            later = panels;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !later.is_null(),
        "no live update changed the wallboard: {first}"
    );

    let shot = browser
        .call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        )
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wallboard.png"), &png).unwrap();
    let _ = browser.child.kill().await;

    let (ok, printed) = finish(child, out, seen).await;
    assert_clean_verdict(ok, &printed);
}
