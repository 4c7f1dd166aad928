# Sourced by the bench scripts (bash): helpers they share. Not executable on its own.

# port_busy PORT: something listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a random port on 127.0.0.1 nothing listens on.
free_port() {
	local p
	while :; do p=$((20000 + RANDOM % 40000)); port_busy "$p" || { echo "$p"; return; }; done
}

# distribution_config FILE ROOTDIR ADDR [DELETE]: write a distribution v3 configuration to
# FILE: filesystem storage in ROOTDIR, in-memory blob descriptor cache, no access log,
# listening on ADDR (host:port); DELETE=1 enables deletes.
distribution_config() {
	local file=$1 root=$2 addr=$3 del=${4:-0} delete=
	if [ "$del" = 1 ]; then
		delete=$'\n  delete:\n    enabled: true'
	fi
	cat >"$file" <<-EOC
		version: 0.1
		log:
		  level: error
		  accesslog:
		    disabled: true
		storage:
		  filesystem:
		    rootdirectory: $root
		  cache:
		    blobdescriptor: inmemory$delete
		http:
		  addr: $addr
	EOC
}

# start_distribution DIR [DELETE]: start distribution ($REGISTRY) on a free port of
# 127.0.0.1, storing under DIR/registry (configuration DIR/registry.yml, log
# DIR/registry.log); sets REG (host:port) and REG_PID. DELETE=1 enables deletes.
start_distribution() {
	local dir=$1 del=${2:-0} try port
	for try in $(seq 1 20); do
		port=$((20000 + RANDOM % 40000))
		port_busy "$port" && continue
		distribution_config "$dir/registry.yml" "$dir/registry" "127.0.0.1:$port" "$del"
		OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true \
			"$REGISTRY" serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
		REG_PID=$!
		for _ in $(seq 1 100); do
			kill -0 "$REG_PID" 2>/dev/null || break
			if port_busy "$port"; then REG=127.0.0.1:$port; return; fi
			sleep 0.1
		done
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=
	done
	cat "$dir/registry.log" >&2
	echo "could not start the registry" >&2
	exit 1
}
