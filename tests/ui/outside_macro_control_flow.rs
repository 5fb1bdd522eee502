// A macro defined outside the workflow whose expansion returns: the compiler cannot see
// into it, so rustc reports a type error at the call (README, the refusals table: define
// the macro in the body, or make it produce a value and write the `return` at the call).
use flow::{task, workflow};

macro_rules! bail {
    ($e:expr) => {
        return Err($e)
    };
}

#[task]
async fn num(x: i64) -> Result<i64, String> {
    Ok(x)
}

#[workflow]
async fn wf(x: i64) -> Result<i64, String> {
    let v = num(x).await?;
    if v < 0 {
        bail!(format!("{v} is negative"));
    }
    num(v + 1).await
}

fn main() {}
