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
