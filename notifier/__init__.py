"""The notifier: signed, retried webhook deliveries of terminal job statuses."""
