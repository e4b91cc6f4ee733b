{{/*
The objects of one component. Every define takes (dict "root" $ "name" <component> "c" <merged settings>).
*/}}

{{- define "fastloans.component.kedaScaled" -}}
{{- if and .root.Values.keda.enabled .c.consumer }}true{{ end -}}
{{- end -}}

{{- define "fastloans.component.deployment" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $labelCtx := dict "root" $root "component" .name -}}
{{- $uses := $c.uses | default dict }}
{{- $opsPort := ternary "ops" "http" (not (empty $c.opsPort)) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "fastloans.fullname" $root }}-{{ .name }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
spec:
  {{- if not (or $c.autoscaling.enabled (include "fastloans.component.kedaScaled" .)) }}
  replicas: {{ $c.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "fastloans.selectorLabels" $labelCtx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "fastloans.labels" $labelCtx | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- /* Roll the pods when their configuration (environment or policy) changes. */}}
        checksum/config: {{ list (include "fastloans.env" .) (ternary (include "fastloans.policyContent" $root) "" (default false $uses.policy)) $root.Values.policy.challengerContent | toJson | sha256sum }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "fastloans.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- include "fastloans.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- toYaml $c.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if $c.affinity }}
      affinity:
        {{- toYaml $c.affinity | nindent 8 }}
      {{- else if ne $c.podAntiAffinity "none" }}
      affinity:
        {{- include "fastloans.antiAffinity" (dict "root" $root "component" .name "preset" $c.podAntiAffinity) | nindent 8 }}
      {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "fastloans.image" (dict "root" $root "image" $c.image) | quote }}
          imagePullPolicy: {{ $c.image.pullPolicy | default $root.Values.image.pullPolicy }}
          {{- with $c.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ $c.port }}
              protocol: TCP
            {{- with $c.opsPort }}
            - name: ops
              containerPort: {{ . }}
              protocol: TCP
            {{- end }}
          env:
            - name: HTTP_HOST
              value: "0.0.0.0"
            - name: HTTP_PORT
              value: {{ $c.port | quote }}
            {{- with $c.opsPort }}
            - name: OPS_PORT
              value: {{ . | quote }}
            {{- end }}
            - name: PROMETHEUS_MULTIPROC_DIR
              value: /tmp/metrics
            {{- with $c.webConcurrency }}
            - name: WEB_CONCURRENCY
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.corsAllowOrigins }}
            - name: CORS_ALLOW_ORIGINS
              value: {{ join "," . | quote }}
            {{- end }}
            {{- with $c.forwardedAllowIps }}
            - name: FORWARDED_ALLOW_IPS
              value: {{ . | quote }}
            {{- end }}
            {{- with $c.keepAliveSeconds }}
            - name: HTTP_KEEPALIVE_SECONDS
              value: {{ . | quote }}
            {{- end }}
            {{- if not (kindIs "invalid" $c.apiDocs) }}
            - name: API_DOCS_ENABLED
              value: {{ $c.apiDocs | quote }}
            {{- end }}
            {{- with $c.reviewClaimIdleMinutes }}
            - name: REVIEW_CLAIM_IDLE_MINUTES
              value: {{ . | quote }}
            {{- end }}
            {{- include "fastloans.env" . | nindent 12 }}
            {{- with $c.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $c.preStopSleepSeconds }}
          {{- /* The endpoint's removal reaches kube-proxy and the ingress controllers after the pod's deletion
          starts: keep serving (and listening) until they stop routing to it, then get SIGTERM. */}}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ . | quote }}]
          {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ $opsPort }}
            periodSeconds: {{ $c.startupProbe.periodSeconds }}
            failureThreshold: {{ $c.startupProbe.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ $opsPort }}
            periodSeconds: {{ $c.livenessProbe.periodSeconds }}
            timeoutSeconds: {{ $c.livenessProbe.timeoutSeconds }}
            failureThreshold: {{ $c.livenessProbe.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ $opsPort }}
            periodSeconds: {{ $c.readinessProbe.periodSeconds }}
            timeoutSeconds: {{ $c.readinessProbe.timeoutSeconds }}
            failureThreshold: {{ $c.readinessProbe.failureThreshold }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $c.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: metrics
              mountPath: /tmp/metrics
            {{- if $uses.policy }}
            - name: policy
              mountPath: /etc/fastloans/policy
              readOnly: true
            {{- end }}
            {{- include "fastloans.caVolumeMounts" . | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        - name: metrics
          emptyDir:
            sizeLimit: 64Mi
        {{- if $uses.policy }}
        - name: policy
          configMap:
            name: {{ include "fastloans.fullname" $root }}-policy
        {{- end }}
        {{- include "fastloans.caVolumes" . | nindent 8 }}
{{- end -}}

{{- define "fastloans.component.service" -}}
{{- $labelCtx := dict "root" .root "component" .name }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "fastloans.fullname" .root }}-{{ .name }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
  {{- with .c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .c.service.type }}
  selector:
    {{- include "fastloans.selectorLabels" $labelCtx | nindent 4 }}
  ports:
    - name: http
      port: {{ .c.port }}
      targetPort: http
      protocol: TCP
    {{- with .c.opsPort }}
    {{- /* For the ServiceMonitor; the Ingress routes only to `http`, the NetworkPolicy admits only Prometheus. */}}
    - name: ops
      port: {{ . }}
      targetPort: ops
      protocol: TCP
    {{- end }}
{{- end -}}

{{- define "fastloans.component.scaling" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $labelCtx := dict "root" $root "component" .name -}}
{{- $target := printf "%s-%s" (include "fastloans.fullname" $root) .name -}}
{{- if include "fastloans.component.kedaScaled" . }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $target }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ $target }}
  minReplicaCount: {{ $c.keda.minReplicaCount }}
  maxReplicaCount: {{ $c.keda.maxReplicaCount }}
  pollingInterval: {{ $root.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $root.Values.keda.cooldownPeriod }}
  triggers:
    - type: kafka
      metadata:
        bootstrapServers: {{ include "fastloans.kafka.bootstrapServers" $root | quote }}
        consumerGroup: {{ $c.consumer.group | quote }}
        topic: {{ include "fastloans.topic" (dict "root" $root "topic" $c.consumer.topic) | quote }}
        lagThreshold: {{ $c.keda.lagThreshold | quote }}
        offsetResetPolicy: earliest
        {{- /* Never scale past the partitions: idle consumers only add rebalances. */}}
        allowIdleConsumers: "false"
        {{- if include "fastloans.kafka.sasl" $root }}
        sasl: {{ get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") $root.Values.externalKafka.saslMechanism | quote }}
        {{- end }}
        {{- if include "fastloans.kafka.tls" $root }}
        tls: enable
        {{- end }}
      {{- if or (include "fastloans.kafka.sasl" $root) (include "fastloans.kafka.tls" $root) }}
      authenticationRef:
        name: {{ include "fastloans.fullname" $root }}-kafka-auth
      {{- end }}
{{- else if $c.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $target }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $target }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}
    {{- with $c.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "fastloans.component.pdb" -}}
{{- if .c.pdb.enabled }}
{{- $labelCtx := dict "root" .root "component" .name }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "fastloans.fullname" .root }}-{{ .name }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .c.pdb.minAvailable) }}
  minAvailable: {{ .c.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .c.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "fastloans.selectorLabels" $labelCtx | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "fastloans.component.networkPolicy" -}}
{{- $root := .root -}}
{{- if $root.Values.networkPolicy.enabled }}
{{- $labelCtx := dict "root" $root "component" .name }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "fastloans.fullname" $root }}-{{ .name }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "fastloans.selectorLabels" $labelCtx | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if and .c.egress .c.egress.internet }}
    - Egress
  {{- /* Public addresses on any port (a tenant's endpoint may use any), DNS, and the release's own pods (the
  database, Kafka); never the private, loopback, link-local (cloud metadata) or shared ranges. A policy's port is
  the DNS pod's own port, after the Service's translation: 53, or the port CoreDNS's manifests name dns/dns-tcp
  when it listens elsewhere unprivileged (1053, 5353). */}}
  egress:
    - to:
        - namespaceSelector: {}
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
        - port: dns
          protocol: UDP
        - port: dns-tcp
          protocol: TCP
    - to:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ $root.Release.Name }}
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            except:
              - 0.0.0.0/8
              - 10.0.0.0/8
              - 100.64.0.0/10
              - 127.0.0.0/8
              - 169.254.0.0/16
              - 172.16.0.0/12
              - 192.168.0.0/16
              - 198.18.0.0/15
        - ipBlock:
            cidr: ::/0
            except:
              - ::1/128
              - fc00::/7
              - fe80::/10
    {{- with .c.egress.extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- end }}
  ingress:
    {{- /* /metrics from Prometheus: the ops port where the component has one (the gateway), else its only port. */}}
    - from:
        - namespaceSelector:
            {{- toYaml $root.Values.networkPolicy.monitoringNamespaceSelector | nindent 12 }}
      ports:
        - port: {{ ternary "ops" "http" (not (empty .c.opsPort)) }}
          protocol: TCP
    {{- if and $root.Values.ingress.enabled (eq .name "gateway") }}
    - from:
        - namespaceSelector:
            {{- toYaml $root.Values.networkPolicy.ingressNamespaceSelector | nindent 12 }}
          podSelector:
            {{- toYaml $root.Values.networkPolicy.ingressPodSelector | nindent 12 }}
      ports:
        - port: http
          protocol: TCP
    {{- end }}
{{- end }}
{{- end -}}

{{- define "fastloans.component.serviceMonitor" -}}
{{- $root := .root -}}
{{- if include "fastloans.crdEnabled" (dict "root" $root "setting" $root.Values.observability.serviceMonitor.enabled "api" "monitoring.coreos.com/v1") }}
{{- $labelCtx := dict "root" $root "component" .name }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "fastloans.fullname" $root }}-{{ .name }}
  labels:
    {{- include "fastloans.labels" $labelCtx | nindent 4 }}
    {{- with $root.Values.observability.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "fastloans.selectorLabels" $labelCtx | nindent 6 }}
  endpoints:
    - port: {{ ternary "ops" "http" (not (empty .c.opsPort)) }}
      path: /metrics
      interval: {{ $root.Values.observability.serviceMonitor.interval }}
{{- end }}
{{- end -}}
