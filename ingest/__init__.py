"""The MQTT consumer: decode, validate, de-duplicate, dead-letter, feed sinks and the rules."""
