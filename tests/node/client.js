// An independent gRPC client (grpc-js, not Strata's code) for the provider:
// discovers the services through server reflection, checks health, and lists
// devices through the admin API loaded from proto/strata/v1/admin/devices.proto.
//   node client.js ADDRESS CA CERT KEY PROTO_DIR
// Prints one JSON object: {"services": [...], "health": "...", "devices": [names]}.
// With PROTO_DIR "-" (a server that is not a provider), no devices.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [address, ca, cert, key, protoDir] = process.argv.slice(2);
const creds = grpc.credentials.createSsl(fs.readFileSync(ca), fs.readFileSync(key),
                                         fs.readFileSync(cert));
// Strata's certificates name "localhost" (unix sockets too).
const options = {'grpc.ssl_target_name_override': 'localhost',
                 'grpc.default_authority': 'localhost'};
const load = (file, includeDirs) => grpc.loadPackageDefinition(
    loader.loadSync(file, {keepCase: true, longs: String, enums: String, defaults: true, includeDirs}));

function fail(what, err) {
  console.error(`${what}: ${err.code} ${err.details || err.message}`);
  process.exit(1);
}

const reflectionProto = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')),
                                  'build/proto/grpc/reflection/v1alpha/reflection.proto');
const healthProto = path.join(path.dirname(require.resolve('grpc-health-check/package.json')),
                              'proto/health/v1/health.proto');
const reflection = load(reflectionProto, []).grpc.reflection.v1alpha;
const health = load(healthProto, []).grpc.health.v1;
const admin = protoDir === '-' ? null :
    load(path.join(protoDir, 'strata/v1/admin/devices.proto'), [protoDir]).strata.v1;

const out = {};
const refl = new reflection.ServerReflection(address, creds, options);
const call = refl.ServerReflectionInfo();
call.on('data', (resp) => {
  if (resp.error_response) fail('reflection', {code: resp.error_response.error_code,
                                               details: resp.error_response.error_message});
  out.services = resp.list_services_response.service.map((s) => s.name).sort();
  call.end();
  new health.Health(address, creds, options).Check({service: ''}, (err, h) => {
    if (err) fail('health', err);
    out.health = h.status;
    if (!admin) {
      console.log(JSON.stringify(out));
      process.exit(0);
    }
    new admin.DeviceService(address, creds, options).ListDevices(
        {page_size: 1000}, (err2, list) => {
          if (err2) fail('ListDevices', err2);
          out.devices = list.devices.map((d) => d.name).sort();
          console.log(JSON.stringify(out));
          process.exit(0);
        });
  });
});
call.on('error', (err) => fail('reflection', err));
call.write({list_services: '*'});
