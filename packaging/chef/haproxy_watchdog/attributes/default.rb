# haproxy-watchdog settings. The EIP, the SNS topic, the OpsWorks instance id and the region
# come from the stack's custom JSON and OpsWorks' own attributes (node['stack'][...],
# node['opsworks']['instance'][...]), as haproxyfailover::setup read them; the nil entries
# below override those, and are how plain Chef/Cinc nodes outside OpsWorks set them.

# "ec2": EC2 AssociateAddress, identity from instance metadata (the project's default).
# "opsworks": OpsWorks AssociateElasticIp, as /etc/failtome.sh did.
default['haproxy_watchdog']['provider'] = 'ec2'

default['haproxy_watchdog']['eip'] = nil                  # default: node['stack']['primary_ip']
default['haproxy_watchdog']['topic_arn'] = nil            # default: node['stack']['failover_topic']
default['haproxy_watchdog']['region'] = nil               # default: node['opsworks']['instance']['region']
default['haproxy_watchdog']['opsworks_instance_id'] = nil # default: node['opsworks']['instance']['id']
# OpsWorks served every stack's API from us-east-1; set the stack's region for a stack
# created on a regional endpoint.
default['haproxy_watchdog']['opsworks_api_region'] = 'us-east-1'

# The EIP check (monit: "port 80 protocol HTTP request / ... for 3 cycles", every 60 s).
default['haproxy_watchdog']['interval'] = '10s'
default['haproxy_watchdog']['timeout'] = '5s'
default['haproxy_watchdog']['fail_after'] = 3
default['haproxy_watchdog']['recover_after'] = 2
default['haproxy_watchdog']['hold_down'] = '5m'
default['haproxy_watchdog']['check_scheme'] = 'http'
default['haproxy_watchdog']['check_port'] = 80
default['haproxy_watchdog']['check_path'] = '/'
default['haproxy_watchdog']['check_host'] = nil           # Host header, when HAProxy routes by name

default['haproxy_watchdog']['checkip_url'] = 'https://checkip.amazonaws.com'
default['haproxy_watchdog']['stats_socket'] = '/run/haproxy/admin.sock'
# A backend that must be UP before this node claims the EIP (recommended).
default['haproxy_watchdog']['haproxy_backend'] = nil

default['haproxy_watchdog']['package_name'] = 'haproxy-watchdog'
# Local path or http(s) URL of a .deb/.rpm to install instead of the repository package.
default['haproxy_watchdog']['package_source'] = nil

# Delete haproxyfailover's monit rule and /etc/failtome.sh once the watchdog runs.
default['haproxy_watchdog']['remove_monit'] = true
# conf.d/20-local-haproxy.toml: an SNS alert when this node's own HAProxy is not ready.
default['haproxy_watchdog']['local_haproxy_alert'] = true
