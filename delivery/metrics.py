"""Prometheus metrics of the relay (prometheus-client's default registry, served at ``/metrics``).

Labels never carry secrets or unbounded values: kinds, statuses and Discord codes only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RESULTS_RECEIVED = Counter("relay_results_received_total", "Results accepted (202)")
DELIVERIES = Counter("relay_deliveries_total", "Delivery outcomes per destination kind", ["kind", "outcome"])
MESSAGES_SENT = Counter("relay_messages_sent_total", "Discord messages created", ["kind"])
DISCORD_RESPONSES = Counter("relay_discord_responses_total", "Discord answers by status and error code",
                            ["kind", "status", "code"])
RATE_LIMITED = Counter("relay_discord_429_total", "429 answers by X-RateLimit-Scope", ["scope"])
CLOUDFLARE_BANS = Counter("relay_cloudflare_bans_total", "429s without JSON/Via: Cloudflare bans")
PAYLOAD_BUGS = Counter("relay_payload_rejected_total", "Payloads Discord refused as invalid (our bug)", ["code"])
EXPIRED_TOKENS = Counter("relay_interaction_tokens_expired_total", "Interaction tokens found expired")
UNDELIVERED = Counter("relay_results_undelivered_total", "Results stored undelivered for pickup")
DELIVERY_LATENCY = Histogram(
    "relay_receive_to_delivered_seconds", "From 202 to the last message of the first delivered destination",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
QUEUE_DEPTH = Gauge("relay_queue_depth", "Deliveries waiting to be sent (pending and due or scheduled)")
OLDEST_PENDING = Gauge("relay_oldest_pending_seconds", "Age of the oldest pending delivery")
LOOP_ERRORS = Counter("relay_loop_errors_total", "Errors a long-running loop survived (it backs off and goes on)",
                      ["loop"])
DELIVERY_CRASHES = Counter("relay_delivery_crashes_total",
                           "Unexpected exceptions while delivering one result (contained to that delivery)")
CHANNEL_PACED = Counter("relay_channel_paced_total",
                        "Webhook posts that waited for their channel's pacer (waited) or were rescheduled to a "
                        "later slot (rescheduled)", ["outcome"])
CHANNELS_LEARNED = Counter("relay_channels_learned_total",
                           "Webhook channels learned from Discord's answers, by source (message, lookup, "
                           "lookup_failed)", ["source"])
ALERTS_SENT = Counter("relay_alert_digests_sent_total", "Operator alert digests posted to RELAY_ALERT_WEBHOOK")
ALERT_EVENTS = Counter("relay_alert_events_sent_total", "Alert events carried by the digests sent")
ALERTS_FAILED = Counter("relay_alerts_failed_total",
                        "Alert digests that could not be delivered (logged, never alerted about), by reason",
                        ["reason"])
STORE_BATCH_CALLS = Histogram(
    "relay_store_batch_calls", "Store calls of the delivery engine committed in one transaction of its writer "
    "thread (what queued while the previous batch was written)", buckets=(1, 2, 4, 8, 16, 32, 64))
