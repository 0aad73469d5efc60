"""The API key's format, which the API makes keys in and the logs redact by: `wt_` and 43 URL-safe characters. The
database stores the first KEY_PREFIX_LENGTH characters (enough to tell keys apart in listings), never the rest."""

KEY_PREFIX = "wt_"
KEY_PREFIX_LENGTH = 10
