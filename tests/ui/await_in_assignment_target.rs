use flow::{task, workflow};

#[task]
async fn slot_of(id: u32) -> usize {
    id as usize % 4
}

// An `.await` inside the place assigned to (an index of the left side).
#[workflow]
async fn wf(id: u32) -> Vec<u32> {
    let mut out = vec![0; 4];
    out[slot_of(id).await] = 7;
    out[slot_of(id + 1).await] += 1;
    out
}

fn main() {}
