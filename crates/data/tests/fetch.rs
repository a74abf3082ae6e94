//! `fetch-cc` against a local HTTP server on 127.0.0.1 (never the internet): downloads, 404s,
//! a flaky URL that succeeds on retry, a slow one that times out, and a resumed rerun.
use m2ib_data::fetch::{fetch_urls, target_path, FetchOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serves a fixed number of connections, then stops (bounded by count and time).
fn serve(max_connections: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let flaky = Arc::new(AtomicUsize::new(0));
    let f = flaky.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(mut s) = stream else { continue };
            let f = f.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                r.read_line(&mut line).ok();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) <= 2 {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body): (&str, &[u8]) = match path.as_str() {
                    "/a.png" => ("200 OK", b"PNG-BYTES-A"),
                    "/b.jpg" => ("200 OK", b"JPEG-BYTES-B"),
                    "/flaky.jpg" if f.fetch_add(1, Ordering::SeqCst) == 0 => {
                        ("500 Internal Server Error", b"no")
                    }
                    "/flaky.jpg" => ("200 OK", b"FLAKY-OK"),
                    "/slow.jpg" => {
                        std::thread::sleep(Duration::from_millis(1500));
                        ("200 OK", b"late")
                    }
                    _ => ("404 Not Found", b"missing"),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).ok();
                s.write_all(body).ok();
            });
        }
    });
    (addr, flaky)
}

#[test]
fn fetch_downloads_retries_times_out_and_resumes() {
    let (base, flaky) = serve(40);
    let dir = std::env::temp_dir().join(format!("m2ib-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let urls: Vec<String> = ["/a.png", "/b.jpg", "/flaky.jpg", "/gone.jpg", "/slow.jpg"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    let opts = FetchOptions {
        concurrency: 3,
        retries: 1,
        timeout: Duration::from_millis(500),
        ..FetchOptions::default()
    };
    let report = fetch_urls(&urls, &dir, &opts, &|| {});
    assert_eq!(report.downloaded, 3, "{report:?}");
    assert_eq!(
        std::fs::read(target_path(&dir, &urls[0])).unwrap(),
        b"PNG-BYTES-A"
    );
    assert!(target_path(&dir, &urls[0]).extension().unwrap() == "png");
    assert_eq!(
        std::fs::read(target_path(&dir, &urls[2])).unwrap(),
        b"FLAKY-OK"
    );
    assert!(
        flaky.load(Ordering::SeqCst) >= 2,
        "the flaky URL was retried"
    );
    let failed: Vec<&str> = report.failed.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&urls[3].as_str()) && failed.contains(&urls[4].as_str()));
    assert!(
        report.failed.iter().any(|(_, e)| e.contains("404")),
        "{:?}",
        report.failed
    );
    // No partial files are left behind.
    assert!(std::fs::read_dir(&dir)
        .unwrap()
        .all(|e| e.unwrap().path().extension().unwrap() != "part"));
    // A rerun skips what is there.
    let again = fetch_urls(&urls[..3], &dir, &opts, &|| {});
    assert_eq!((again.downloaded, again.skipped), (0, 3));
    std::fs::remove_dir_all(&dir).ok();
}
