use flow::{task, workflow};

#[workflow]
fn not_async(id: u32) -> u32 {
    id
}

#[workflow]
async fn generic<T: Clone>(value: T) -> T {
    value
}

#[task]
async fn borrowed(name: &str) -> usize {
    name.len()
}

#[workflow]
async fn opaque(id: u32) -> impl std::fmt::Debug {
    id
}

fn main() {}
