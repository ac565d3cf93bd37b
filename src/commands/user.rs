//! `chargegrid user create`: bootstrap accounts (an ADMIN) from the command line.

use crate::api::graphql::accounts::create_user;
use crate::configuration::Settings;
use crate::domain::{Email, Password, PersonName, Role};
use crate::startup;

pub async fn create(
    settings: Settings,
    email: &str,
    password: &str,
    name: &str,
    role: &str,
) -> anyhow::Result<()> {
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    let name = PersonName::parse(name)?;
    let role = Role::parse(role)?;
    let ctx = startup::connect_core(settings).await?;
    let source = format!("chargegrid-cli/{}", ctx.settings.node_id);
    let user = create_user(&ctx, &source, &email, &name, &password, role, None)
        .await
        .map_err(|e| anyhow::anyhow!(e.message()))?;
    ctx.amqp.close().await;
    println!("created {} user {}", role.as_str(), user.id);
    Ok(())
}
