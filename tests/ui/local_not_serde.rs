use flow::{task, workflow};

struct Connection {
    open: bool,
}

#[task]
async fn fetch(id: u32) -> u32 {
    id
}

#[workflow]
async fn wf(id: u32) -> bool {
    let conn = Connection { open: true };
    let _ = fetch(id).await;
    conn.open
}

fn main() {}
