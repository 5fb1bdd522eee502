use flow::{task, workflow};

#[task]
async fn greet(name: String) -> String {
    format!("hello {name}")
}

fn lookup(id: u32) -> Option<String> {
    (id > 0).then(|| format!("user {id}"))
}

#[workflow]
async fn wf(id: u32) -> String {
    let mut out = String::new();
    if let Some(n) = &lookup(id) {
        out = greet(n.clone()).await;
    }
    out
}

fn main() {}
