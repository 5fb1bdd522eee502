//! A journal whose creation was interrupted (the process died while redb initialized the
//! file, before redb wrote its magic number) opens as a new journal; other files that do
//! not start with redb's magic number (a zeroed journal among them) are still refused,
//! byte for byte unchanged.

use flow_runtime::{Engine, FlowError};

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-creation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test]
async fn a_zeroed_file_left_by_an_interrupted_creation_opens_as_a_new_journal() {
    let path = temp("zeroed.redb");
    // Shorter than redb's layout before its first commit (72 KiB).
    std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
    let engine = Engine::builder().open(&path).await.unwrap();
    assert!(engine.list().await.unwrap().is_empty());
    engine.shutdown().await;
    // It is a journal now.
    let engine = Engine::builder().open(&path).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test]
async fn a_foreign_file_starting_with_zeros_is_refused_unchanged() {
    let path = temp("foreign.bin");
    let mut bytes = vec![0u8; 64];
    bytes.extend_from_slice(b"someone else's data, not a journal");
    std::fs::write(&path, &bytes).unwrap();
    let err = Engine::builder().open(&path).await.unwrap_err();
    assert!(matches!(err, FlowError::NotARedbFile { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn a_zeroed_file_longer_than_an_interrupted_creation_is_refused_unchanged() {
    let path = temp("zeroed-journal.redb");
    let zeros = vec![0u8; 300 * 1024];
    std::fs::write(&path, &zeros).unwrap();
    let err = Engine::builder().open(&path).await.unwrap_err();
    assert!(matches!(err, FlowError::NotARedbFile { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), zeros);
}
