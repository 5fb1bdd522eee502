#[workflow]
async fn restock(items: Vec<String>, mut budget: u64) -> Result<u64, String> {
    let mut spent = 0;
    for item in items {
        let price = quote(item.clone()).await?;
        if price > budget {
            continue;
        }
        buy(item, price).await?;
        budget -= price;
        spent += price;
    }
    Ok(spent)
}
