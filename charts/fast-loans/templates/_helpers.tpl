{{/*
Names, labels and the small pieces every template shares.
*/}}

{{- define "fastloans.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fastloans.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of an object. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "fastloans.labels" -}}
helm.sh/chart: {{ include "fastloans.chart" .root }}
{{ include "fastloans.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "fastloans.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "fastloans.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastloans.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fastloans.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fastloans.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Deep-merge .src into .dst in place (maps merged key by key, everything else replaced,
     false and 0 included — unlike sprig's mergeOverwrite). Call with (dict "dst" $a "src" $b). */}}
{{- define "fastloans.deepMerge" -}}
{{- $dst := .dst -}}
{{- range $key, $value := .src -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) -}}
{{- include "fastloans.deepMerge" (dict "dst" (get $dst $key) "src" $value) -}}
{{- else -}}
{{- $_ := set $dst $key $value -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's settings: the default block with the component's entry merged over it.
     Call with (dict "root" $ "name" "gateway"); returns YAML (use fromYaml). */}}
{{- define "fastloans.componentConfig" -}}
{{- $merged := deepCopy .root.Values.default -}}
{{- include "fastloans.deepMerge" (dict "dst" $merged "src" (deepCopy (index .root.Values.components .name))) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* A service image reference. Call with (dict "root" $ "image" $c.image). */}}
{{- define "fastloans.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The tag the services report as their release (SENTRY_RELEASE). */}}
{{- define "fastloans.release" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* ---------- PostgreSQL ---------- */}}

{{- define "fastloans.postgresql.primaryHost" -}}
{{- printf "%s-postgresql-primary" (include "fastloans.fullname" .) -}}
{{- end -}}

{{- define "fastloans.postgresql.readHost" -}}
{{- printf "%s-postgresql-read" (include "fastloans.fullname" .) -}}
{{- end -}}

{{- define "fastloans.postgresql.secretName" -}}
{{- if .Values.postgresql.auth.existingSecret -}}
{{- .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-postgresql" (include "fastloans.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.database.url" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "postgresql://%s@%s:5432/%s" .Values.postgresql.auth.username (include "fastloans.postgresql.primaryHost" .) .Values.postgresql.auth.database -}}
{{- else -}}
{{- .Values.externalDatabase.url -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.database.readUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- $host := ternary (include "fastloans.postgresql.readHost" .) (include "fastloans.postgresql.primaryHost" .) .Values.postgresql.replica.enabled -}}
{{- printf "postgresql://%s@%s:5432/%s" .Values.postgresql.auth.username $host .Values.postgresql.auth.database -}}
{{- else -}}
{{- .Values.externalDatabase.readUrl | default .Values.externalDatabase.url -}}
{{- end -}}
{{- end -}}

{{/* Secret name and key of the application's database password, empty when there is none. */}}
{{- define "fastloans.database.passwordSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "fastloans.postgresql.secretName" . -}}
{{- else -}}
{{- .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.database.passwordKey" -}}
{{- ternary .Values.postgresql.auth.passwordKey .Values.externalDatabase.passwordKey .Values.postgresql.enabled -}}
{{- end -}}

{{/* ---------- Kafka ---------- */}}

{{- define "fastloans.kafka.headless" -}}
{{- printf "%s-kafka-headless" (include "fastloans.fullname" .) -}}
{{- end -}}

{{- define "fastloans.kafka.bootstrapServers" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s-kafka:9092" (include "fastloans.fullname" .) -}}
{{- else -}}
{{- .Values.externalKafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.kafka.securityProtocol" -}}
{{- ternary "PLAINTEXT" .Values.externalKafka.securityProtocol .Values.kafka.enabled -}}
{{- end -}}

{{- define "fastloans.kafka.sasl" -}}
{{- if and (not .Values.kafka.enabled) (hasPrefix "SASL_" .Values.externalKafka.securityProtocol) -}}true{{- end -}}
{{- end -}}

{{- define "fastloans.kafka.tls" -}}
{{- if and (not .Values.kafka.enabled) (has .Values.externalKafka.securityProtocol (list "SSL" "SASL_SSL")) -}}true{{- end -}}
{{- end -}}

{{/* A stable KRaft cluster id: 16 bytes, base64url without padding (22 characters). */}}
{{- define "fastloans.kafka.clusterId" -}}
{{- if .Values.kafka.clusterId -}}
{{- .Values.kafka.clusterId -}}
{{- else -}}
{{- printf "%s/%s" .Release.Namespace (include "fastloans.fullname" .) | sha256sum | trunc 16 | b64enc | trimSuffix "==" | replace "+" "-" | replace "/" "_" -}}
{{- end -}}
{{- end -}}

{{- define "fastloans.topic" -}}
{{- printf "%sloan-applications.%s" .root.Values.topics.prefix .topic -}}
{{- end -}}

{{/* ---------- Pod pieces ---------- */}}

{{/* Environment shared by the services and the Jobs. Call with (dict "root" $ "c" $componentConfig "name" "gateway"). */}}
{{- define "fastloans.env" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $uses := $c.uses | default dict -}}
- name: ENVIRONMENT
  value: {{ $root.Values.environment | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: SERVICE_NAME
  value: {{ printf "fastloans-%s" .name | quote }}
{{- if $uses.database }}
- name: DATABASE_URL
  value: {{ include "fastloans.database.url" $root | quote }}
- name: DATABASE_READ_URL
  value: {{ include "fastloans.database.readUrl" $root | quote }}
{{- if include "fastloans.database.passwordSecret" $root }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fastloans.database.passwordSecret" $root }}
      key: {{ include "fastloans.database.passwordKey" $root }}
{{- end }}
- name: DATABASE_SSLMODE
  value: {{ ternary "disable" $root.Values.externalDatabase.sslMode $root.Values.postgresql.enabled | quote }}
{{- if and (not $root.Values.postgresql.enabled) (or $root.Values.externalDatabase.caBundle.configMap $root.Values.externalDatabase.caBundle.secret) }}
- name: DATABASE_SSLROOTCERT
  value: {{ printf "/etc/fastloans/database-ca/%s" $root.Values.externalDatabase.caBundle.key | quote }}
{{- end }}
{{- with $c.databasePoolSize }}
- name: DATABASE_POOL_SIZE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $uses.webhookSecrets }}
- name: WEBHOOK_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.webhookSecrets.existingSecret | default (printf "%s-webhook-secrets" (include "fastloans.fullname" $root)) }}
      key: {{ $root.Values.webhookSecrets.key }}
{{- end }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "fastloans.kafka.bootstrapServers" $root | quote }}
- name: KAFKA_SECURITY_PROTOCOL
  value: {{ include "fastloans.kafka.securityProtocol" $root | quote }}
{{- if include "fastloans.kafka.sasl" $root }}
- name: KAFKA_SASL_MECHANISM
  value: {{ $root.Values.externalKafka.saslMechanism | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ $root.Values.externalKafka.username | quote }}
{{- if $uses.kafka }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.externalKafka.existingSecret }}
      key: {{ $root.Values.externalKafka.passwordKey }}
{{- end }}
{{- end }}
{{- if and (include "fastloans.kafka.tls" $root) (or $root.Values.externalKafka.caBundle.configMap $root.Values.externalKafka.caBundle.secret) }}
- name: KAFKA_SSL_CAFILE
  value: {{ printf "/etc/fastloans/kafka-ca/%s" $root.Values.externalKafka.caBundle.key | quote }}
{{- end }}
- name: KAFKA_TOPIC_PREFIX
  value: {{ $root.Values.topics.prefix | quote }}
{{- with $c.consumer }}
- name: KAFKA_CONSUMER_GROUP
  value: {{ .group | quote }}
{{- end }}
{{- with $root.Values.observability.sentry }}
{{- if .existingSecret }}
- name: SENTRY_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .dsnKey }}
- name: SENTRY_ENVIRONMENT
  value: {{ .environment | default $root.Values.environment | quote }}
- name: SENTRY_RELEASE
  value: {{ include "fastloans.release" $root | quote }}
- name: SENTRY_TRACES_SAMPLE_RATE
  value: {{ .tracesSampleRate | quote }}
{{- end }}
{{- end }}
{{- with $root.Values.observability.elasticApm }}
{{- if .serverUrl }}
- name: ELASTIC_APM_SERVER_URL
  value: {{ .serverUrl | quote }}
- name: ELASTIC_APM_ENVIRONMENT
  value: {{ .environment | default $root.Values.environment | quote }}
- name: ELASTIC_APM_SERVICE_NAME
  value: {{ printf "fastloans-%s" $.name | quote }}
{{- if .existingSecret }}
- name: ELASTIC_APM_SECRET_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretTokenKey }}
{{- end }}
{{- end }}
{{- end }}
{{- if $uses.policy }}
- name: POLICY_FILE
  value: /etc/fastloans/policy/policy.yaml
{{- if $root.Values.policy.challengerContent }}
- name: CHALLENGER_POLICY_FILE
  value: /etc/fastloans/policy/challenger.yaml
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes for the CA bundles and the policy. Call with (dict "root" $ "c" $c). */}}
{{- define "fastloans.caVolumes" -}}
{{- $root := .root -}}
{{- $uses := .c.uses | default dict -}}
{{- if and $uses.database (not $root.Values.postgresql.enabled) }}
{{- with $root.Values.externalDatabase.caBundle }}
{{- if .configMap }}
- name: database-ca
  configMap:
    name: {{ .configMap }}
{{- else if .secret }}
- name: database-ca
  secret:
    secretName: {{ .secret }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "fastloans.kafka.tls" $root }}
{{- with $root.Values.externalKafka.caBundle }}
{{- if .configMap }}
- name: kafka-ca
  configMap:
    name: {{ .configMap }}
{{- else if .secret }}
- name: kafka-ca
  secret:
    secretName: {{ .secret }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "fastloans.caVolumeMounts" -}}
{{- $root := .root -}}
{{- $uses := .c.uses | default dict -}}
{{- if and $uses.database (not $root.Values.postgresql.enabled) (or $root.Values.externalDatabase.caBundle.configMap $root.Values.externalDatabase.caBundle.secret) }}
- name: database-ca
  mountPath: /etc/fastloans/database-ca
  readOnly: true
{{- end }}
{{- if and (include "fastloans.kafka.tls" $root) (or $root.Values.externalKafka.caBundle.configMap $root.Values.externalKafka.caBundle.secret) }}
- name: kafka-ca
  mountPath: /etc/fastloans/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The policy files as the ConfigMap holds them. */}}
{{- define "fastloans.policyContent" -}}
{{- .Values.policy.content | default (.Files.Get "files/policy.yaml") -}}
{{- end -}}

{{/* The restricted pod and container security contexts of the chart's own data stores and Jobs. */}}
{{- define "fastloans.podSecurityContext" -}}
{{- toYaml .Values.default.podSecurityContext -}}
{{- end -}}

{{- define "fastloans.securityContext" -}}
{{- toYaml .Values.default.securityContext -}}
{{- end -}}

{{/* Whether an optional CRD-backed object should render: true, false or "auto" (when the API exists). */}}
{{- define "fastloans.crdEnabled" -}}
{{- $setting := .setting -}}
{{- if kindIs "bool" $setting -}}
{{- if $setting }}true{{ end -}}
{{- else if .root.Capabilities.APIVersions.Has .api -}}
true
{{- end -}}
{{- end -}}

{{/* Pod anti-affinity preset. Call with (dict "root" $ "component" name "preset" soft|hard|none). */}}
{{- define "fastloans.antiAffinity" -}}
{{- if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "fastloans.selectorLabels" . | nindent 12 }}
{{- else if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "fastloans.selectorLabels" . | nindent 10 }}
{{- end }}
{{- end -}}
