#
# Cookbook:: haproxy_watchdog
# Recipe:: setup
#
# Replaces haproxyfailover::setup (monit + /etc/failtome.sh): installs haproxy-watchdog,
# writes its configuration, starts it, and only then removes the monit watch, so the EIP is
# never left unwatched. Run it in the HAProxy layer's setup event.

settings = HaproxyWatchdog::Settings.resolve(node)
attrs = node['haproxy_watchdog']
conf_dir = '/etc/haproxy-watchdog'
main_conf = "#{conf_dir}/watchdog.toml"
local_alert_conf = "#{conf_dir}/conf.d/20-local-haproxy.toml"

# --- package
pkg_name = attrs['package_name']
pkg_source = attrs['package_source'].to_s.strip
if pkg_source.empty?
  package pkg_name
else
  pkg_file = pkg_source
  if pkg_source =~ %r{\Ahttps?://}
    pkg_file = ::File.join(Chef::Config[:file_cache_path], ::File.basename(pkg_source.split('?').first))
    remote_file pkg_file do
      source pkg_source
      mode '0644'
    end
  end
  case node['platform_family']
  when 'debian'
    dpkg_package pkg_name do
      source pkg_file
    end
  when 'rhel', 'amazon', 'fedora'
    rpm_package pkg_name do
      source pkg_file
    end
  else
    raise "haproxy_watchdog: package_source is set but platform family #{node['platform_family'].inspect} has neither dpkg nor rpm here; unset it to use the package repository"
  end
end

# --- configuration (the package ships example files under these names; these replace them)
[conf_dir, "#{conf_dir}/conf.d"].each do |dir|
  directory dir do
    owner 'root'
    group 'root'
    mode '0755'
  end
end

template main_conf do
  source 'watchdog.toml.erb'
  owner 'root'
  group 'haproxy-watchdog'
  mode '0640'
  variables(
    :region => settings[:region],
    :checkip_url => settings[:checkip_url],
    :stats_socket => settings[:stats_socket],
    :haproxy_backend => settings[:haproxy_backend],
    :topic_arn => settings[:topic_arn],
    :provider => settings[:provider],
    :opsworks_api_region => settings[:opsworks_api_region],
    :opsworks_instance_id => settings[:opsworks_instance_id]
  )
  notifies :reload, 'service[haproxy-watchdog]', :delayed
end

template "#{conf_dir}/conf.d/10-eip-failover.toml" do
  source '10-eip-failover.toml.erb'
  owner 'root'
  group 'haproxy-watchdog'
  mode '0640'
  variables(
    :eip => settings[:eip],
    :check_url => settings[:check_url],
    :check_host => settings[:check_host],
    :interval => settings[:interval],
    :timeout => settings[:timeout],
    :fail_after => settings[:fail_after],
    :recover_after => settings[:recover_after],
    :provider => settings[:provider],
    :hold_down => settings[:hold_down],
    :topic_arn => settings[:topic_arn]
  )
  notifies :reload, 'service[haproxy-watchdog]', :delayed
end

if settings[:local_haproxy_alert]
  template local_alert_conf do
    source '20-local-haproxy.toml.erb'
    owner 'root'
    group 'haproxy-watchdog'
    mode '0640'
    variables(
      :stats_socket => settings[:stats_socket],
      :haproxy_backend => settings[:haproxy_backend],
      :topic_arn => settings[:topic_arn]
    )
    notifies :reload, 'service[haproxy-watchdog]', :delayed
  end
else
  file local_alert_conf do
    action :delete
    notifies :reload, 'service[haproxy-watchdog]', :delayed
  end
end

# conf.d files are only valid together with watchdog.toml (e.g. the [alerts] topic), so the
# set is checked as a whole once all of it is written. A failure stops the run here: the
# service is not started, and its reload re-validates and keeps the running configuration.
execute "haproxy-watchdog validate --config #{main_conf}"

service 'haproxy-watchdog' do
  supports :status => true, :restart => true, :reload => true
  action [:enable, :start]
end

# --- remove haproxyfailover::setup's monit watch, now that the watchdog runs
if settings[:remove_monit]
  service 'monit' do
    supports :status => true, :restart => true, :reload => true
    action :nothing
  end

  %w(/etc/monit.d/haproxywatch.monitrc /etc/monit/conf.d/haproxywatch.monitrc).each do |rule|
    file rule do
      action :delete
      notifies :reload, 'service[monit]', :delayed
    end
  end

  # After the rule: a monit that still has it loaded finds no script to run.
  file '/etc/failtome.sh' do
    action :delete
  end
end
