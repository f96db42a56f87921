"""Pure sanitizing functions shared by the plugin (in the agent) and the collector.

- ``Scrubber``: removes secrets, personal data, IPs and absolute paths from free text, counting
  each redaction by rule.
- ``describe``: reduces content (prompts, completions, tool arguments...) to size and type.
- ``anonymize_ip``: IPv4 keeps three octets, IPv6 its first 48 bits.
- ``ContentKeys``: which attribute keys carry content in each convention.
"""

from agent_otel.sanitize.content import describe, text_type, type_from_mime
from agent_otel.sanitize.keys import ContentKeys
from agent_otel.sanitize.patterns import BUILTIN_RULES, REDACTED, Rule
from agent_otel.sanitize.scrubber import RedactionCounts, Scrubber, anonymize_ip, luhn_ok, pseudonymize

__all__ = [
    "BUILTIN_RULES",
    "REDACTED",
    "ContentKeys",
    "RedactionCounts",
    "Rule",
    "Scrubber",
    "anonymize_ip",
    "describe",
    "luhn_ok",
    "pseudonymize",
    "text_type",
    "type_from_mime",
]
