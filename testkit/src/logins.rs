//! The three kinds of login the tests, the traffic and the figures send, each
//! with the status the book promises for it.

/// The three kinds of login the tests and figures send, each with the status
/// the book promises for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The demo user's valid credentials: 200.
    Good,
    /// The demo user with a wrong password: 401.
    WrongPassword,
    /// A body that is not JSON: 400.
    Malformed,
}

impl Login {
    /// The request body.
    #[must_use]
    pub fn body(self) -> &'static str {
        match self {
            Login::Good => r#"{"username":"user","password":"pass"}"#,
            Login::WrongPassword => r#"{"username":"user","password":"wrong"}"#,
            Login::Malformed => r#"{"username":"#,
        }
    }

    /// The status the server must answer.
    #[must_use]
    pub fn expected_status(self) -> u16 {
        match self {
            Login::Good => 200,
            Login::WrongPassword => 401,
            Login::Malformed => 400,
        }
    }

    /// Sends this login to `login_url` and checks the status.
    pub async fn send(self, client: &reqwest::Client, login_url: &str) -> anyhow::Result<()> {
        self.send_request(client, login_url, None).await
    }

    /// [`send`](Self::send) with `X-Forwarded-For: forwarded_for`, as a proxy
    /// forwards a client's request.
    pub async fn send_as(
        self,
        client: &reqwest::Client,
        login_url: &str,
        forwarded_for: &str,
    ) -> anyhow::Result<()> {
        self.send_request(client, login_url, Some(forwarded_for))
            .await
    }

    async fn send_request(
        self,
        client: &reqwest::Client,
        login_url: &str,
        forwarded_for: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut request = client
            .post(login_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(forwarded) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let status = request
            .body(self.body())
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("POST {login_url}: {error}"))?
            .status()
            .as_u16();
        let expected = self.expected_status();
        anyhow::ensure!(
            status == expected,
            "POST {login_url} {}: expected {expected}, got {status}",
            self.body()
        );
        Ok(())
    }
}

/// Sends `good` valid logins, `bad` wrong-password logins and `malformed`
/// bodies to `login_url`, checking that each gets the status the book promises
/// (200, 401, 400).
pub async fn send_logins(
    login_url: &str,
    good: usize,
    bad: usize,
    malformed: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let plan = [
        (good, Login::Good),
        (bad, Login::WrongPassword),
        (malformed, Login::Malformed),
    ];
    for (count, login) in plan {
        for _ in 0..count {
            login.send(&client, login_url).await?;
        }
    }
    Ok(())
}
