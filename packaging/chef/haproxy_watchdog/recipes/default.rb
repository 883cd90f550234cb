include_recipe 'haproxy_watchdog::setup'
