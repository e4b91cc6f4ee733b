{{/*
validateValues: refuse combinations of values that would deploy a broken or wasteful
system. Each check adds one readable line; all of them are reported together.
*/}}
{{- define "fastloans.validateValues" -}}
{{- $errors := list -}}
{{- $partitions := int .Values.topics.partitions -}}
{{- range $name := keys .Values.components | sortAlpha -}}
{{- $c := include "fastloans.componentConfig" (dict "root" $ "name" $name) | fromYaml -}}
{{- if and $c.enabled $c.consumer -}}
{{- $max := int $c.replicas -}}
{{- $from := "replicas" -}}
{{- if $.Values.keda.enabled -}}
{{- $max = int $c.keda.maxReplicaCount -}}
{{- $from = "keda.maxReplicaCount" -}}
{{- else if $c.autoscaling.enabled -}}
{{- $max = int $c.autoscaling.maxReplicas -}}
{{- $from = "autoscaling.maxReplicas" -}}
{{- end -}}
{{- if gt $max $partitions -}}
{{- $errors = append $errors (printf "components.%s: up to %d replicas (%s) but topic %s has only %d partitions (topics.partitions); the extra consumers would sit idle. Lower %s or raise topics.partitions." $name $max $from (include "fastloans.topic" (dict "root" $ "topic" $c.consumer.topic)) $partitions $from) -}}
{{- end -}}
{{- end -}}
{{- if and $c.enabled $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors (printf "components.%s: autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)." $name (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.topics.minInsyncReplicas)) (gt (int .Values.topics.minInsyncReplicas) (int .Values.topics.replicationFactor)) -}}
{{- $errors = append $errors (printf "topics.minInsyncReplicas (%d) cannot exceed topics.replicationFactor (%d): acks=all writes would always fail." (int .Values.topics.minInsyncReplicas) (int .Values.topics.replicationFactor)) -}}
{{- end -}}
{{- if .Values.kafka.enabled -}}
{{- if gt (int .Values.kafka.replicationFactor) (int .Values.kafka.replicas) -}}
{{- $errors = append $errors (printf "kafka.replicationFactor (%d) cannot exceed kafka.replicas (%d)." (int .Values.kafka.replicationFactor) (int .Values.kafka.replicas)) -}}
{{- end -}}
{{- if gt (int .Values.topics.replicationFactor) (int .Values.kafka.replicas) -}}
{{- $errors = append $errors (printf "topics.replicationFactor (%d) cannot exceed kafka.replicas (%d)." (int .Values.topics.replicationFactor) (int .Values.kafka.replicas)) -}}
{{- end -}}
{{- if gt (int .Values.kafka.minInsyncReplicas) (int .Values.kafka.replicationFactor) -}}
{{- $errors = append $errors (printf "kafka.minInsyncReplicas (%d) cannot exceed kafka.replicationFactor (%d): acks=all writes would always fail." (int .Values.kafka.minInsyncReplicas) (int .Values.kafka.replicationFactor)) -}}
{{- end -}}
{{- if gt (int .Values.kafka.minInsyncReplicas) (int .Values.topics.replicationFactor) -}}
{{- $errors = append $errors (printf "kafka.minInsyncReplicas (%d) cannot exceed topics.replicationFactor (%d): acks=all writes would always fail." (int .Values.kafka.minInsyncReplicas) (int .Values.topics.replicationFactor)) -}}
{{- end -}}
{{- else -}}
{{- if not .Values.externalKafka.bootstrapServers -}}
{{- $errors = append $errors "kafka.enabled=false needs externalKafka.bootstrapServers." -}}
{{- end -}}
{{- if hasPrefix "SASL_" .Values.externalKafka.securityProtocol -}}
{{- if not (and .Values.externalKafka.username .Values.externalKafka.existingSecret) -}}
{{- $errors = append $errors (printf "externalKafka.securityProtocol=%s needs externalKafka.username and externalKafka.existingSecret (the SASL password)." .Values.externalKafka.securityProtocol) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.postgresql.enabled -}}
{{- if and .Values.postgresql.synchronousReplication (not .Values.postgresql.replica.enabled) -}}
{{- $errors = append $errors "postgresql.synchronousReplication needs postgresql.replica.enabled: without a standby every commit would wait forever." -}}
{{- end -}}
{{- else -}}
{{- if not .Values.externalDatabase.url -}}
{{- $errors = append $errors "postgresql.enabled=false needs externalDatabase.url." -}}
{{- end -}}
{{- if and .Values.externalDatabase.caBundle.configMap .Values.externalDatabase.caBundle.secret -}}
{{- $errors = append $errors "externalDatabase.caBundle: set configMap or secret, not both." -}}
{{- end -}}
{{- end -}}
{{- if and .Values.externalKafka.caBundle.configMap .Values.externalKafka.caBundle.secret -}}
{{- $errors = append $errors "externalKafka.caBundle: set configMap or secret, not both." -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.components.gateway.enabled) -}}
{{- $errors = append $errors "ingress.enabled needs components.gateway.enabled." -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nfast-loans: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
