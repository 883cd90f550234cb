name             'haproxy_watchdog'
maintainer       'haproxy-watchdog contributors'
license          'MIT'
description      'Installs and configures haproxy-watchdog for Elastic IP failover; replaces the monit + failtome.sh setup (haproxyfailover::setup)'
version          '0.1.0'
chef_version     '>= 12' if respond_to?(:chef_version)

%w(debian ubuntu amazon centos redhat).each do |os|
  supports os
end

