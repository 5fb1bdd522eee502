use flow::{task, workflow};

#[task]
async fn greet(name: String) -> String {
    format!("hello {name}")
}

#[workflow]
async fn wf(name: Option<String>) -> String {
    let mut out = String::new();
    if let Some(n) = &name {
        out = greet(n.clone()).await;
    }
    out
}

fn main() {}
