"""Everything RQ runs, and the renewer: Graph client, tokens, message fetch, triggers, subscriptions."""
