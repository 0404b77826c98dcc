#!/usr/bin/env python3
"""kafka-python against a `sluice serve --sasl-users` listener (SaslHandshake v1, then the
flexible SaslAuthenticate v2): with SCRAM-SHA-256 and with PLAIN, produce one record and read
the topic back; then a wrong password must not get in. Usage: kafka_python_sasl.py BOOTSTRAP
USER PASSWORD TOPIC. Exits 1 at the first failure."""
import sys

from kafka import KafkaConsumer, KafkaProducer


def main():
    bootstrap, user, password, topic = sys.argv[1:5]
    for mechanism in ["SCRAM-SHA-256", "PLAIN"]:
        auth = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                    sasl_plain_username=user, sasl_plain_password=password)
        p = KafkaProducer(bootstrap_servers=bootstrap, **auth)
        p.send(topic, value=f"kafka-python {mechanism}".encode()).get(timeout=20)
        p.close()
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000, **auth)
        values = [m.value.decode() for m in c]
        c.close()
        if f"kafka-python {mechanism}" not in values:
            print(f"FAIL {mechanism}: read {values}")
            sys.exit(1)
        print(f"ok kafka-python {mechanism}: produced and read back ({len(values)} records in {topic})")
    try:
        KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                      sasl_plain_username=user, sasl_plain_password=password + "-wrong", bootstrap_timeout_ms=4000)
    except Exception as e:
        print(f"ok kafka-python wrong password refused ({type(e).__name__})")
        return
    print("FAIL a wrong password got in")
    sys.exit(1)


if __name__ == "__main__":
    main()
