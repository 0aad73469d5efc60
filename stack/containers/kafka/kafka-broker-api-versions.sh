#!/bin/sh
# The apache/kafka image's script of this name, which docker-compose.yml's healthcheck runs.
exec java -Xmx128m -cp "/opt/kafka/tools-libs/*" -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
