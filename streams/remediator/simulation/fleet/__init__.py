"""``remediator simulate``: a simulated GPU fleet feeding health signals to a broker.

- :mod:`.generator`: what the fleet reports, signal by signal (pure: seeded randomness,
  time given by the caller), so its mix is unit-tested;
- :mod:`.runner`: pacing, producing to Kafka with aiokafka, the progress line.
"""
