use flow::{task, workflow};

#[task]
async fn num(x: i64) -> Result<i64, String> {
    Ok(x)
}

fn parse(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

// A macro defined in the body whose expansion returns, or applies `?`, or leaves a loop
// with steps: refused at each call, with the fix.
#[workflow]
async fn body_macros(x: i64) -> Result<i64, String> {
    macro_rules! bail {
        ($e:expr) => {
            return Err($e)
        };
    }
    macro_rules! get {
        ($e:expr) => {
            parse($e)?
        };
    }
    macro_rules! stop {
        () => {
            break
        };
    }
    if x < 0 {
        bail!("negative".to_string());
    }
    let a = get!("4");
    loop {
        num(a).await?;
        stop!();
    }
    num(x + a).await
}

// `?` in the arguments of a macro the compiler does not see into.
#[workflow]
async fn question_mark_in_macro_arguments(x: i64) -> Result<bool, String> {
    let s = format!("{x}");
    let small = matches!(parse(&s)?, 0..=9);
    num(x).await?;
    Ok(small)
}

fn main() {}
