"""The Microsoft Graph client: one pooled session, tokens through MSAL, per-mailbox politeness, large uploads."""
